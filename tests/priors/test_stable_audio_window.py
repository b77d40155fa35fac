"""Full-window denoising of StableAudioOpenPrior against diffusers' StableAudioPipeline itself.

The pipeline always denoises the transformer's whole ``sample_size`` window
(256 latent frames for the tiny model of conftest.py) and crops afterwards. The
oracle is the pipeline's own ``__call__`` (its prompt and duration encoding,
rotary embedding over the window, guidance and scheduler loop, ``output_type=
"latent"``), given the prior's padded noisy latents, with a scheduler that
starts where SDS starts: on the prior's sigma grid from the drawn level down to 0,
with an initial noise scale of 1 (the latents passed in are already noisy).

* One step: the shipped ``CosineDPMSolverMultistepScheduler``. Its step to
  ``sigma = 0`` has no noise term, so the pipeline's result is exact.
* Several steps: the shipped scheduler is the stochastic (SDE) DPM-Solver++;
  the oracle is diffusers' deterministic DPM-Solver++ 2M
  (``EDMDPMSolverMultistepScheduler``, ``algorithm_type="dpmsolver++"``) with
  Stable Audio's ``atan`` noise conditioning, the ODE form the prior runs.
"""

from __future__ import annotations

import math

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.priors.window import LatentWindow, check_window, item_seed, padding_noise

N_CLIP = 20  # latent frames of the clips below; the tiny model's window is 256


@pytest.fixture(scope="module")
def clip_prior(tiny_builder):
    """The same weights as ``tiny_prior`` (seed 0), denoising the clip's frames only."""
    return tiny_builder["prior"](window="clip")


def _noisy(prior, t, batch=2, frames=N_CLIP, seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, prior.latent_channels, frames, generator=g)
    return prior.add_noise(z, torch.randn(z.shape, generator=g), t)


def _scheduler_on_grid(base_cls, config: dict, sigmas: torch.Tensor, atan_conditioning: bool = False):
    """``base_cls`` whose ``set_timesteps`` installs ``sigmas`` (ending at 0) and whose initial noise scale is 1."""

    class OnGrid(base_cls):
        @property
        def init_noise_sigma(self) -> float:
            return 1.0

        def set_timesteps(self, num_inference_steps=None, device=None):
            super().set_timesteps(num_inference_steps, device)
            self.sigmas = sigmas.float().cpu()
            self.timesteps = self.precondition_noise(self.sigmas[:-1]).to(device)

        if atan_conditioning:
            def precondition_noise(self, sigma):
                return torch.atan(torch.as_tensor(sigma)) * (2.0 / math.pi)

    return OnGrid(**config)


def _pipeline_latents(prior, scheduler, window_latents, prompt, negative, seconds, guidance, steps):
    """The pipeline's ``__call__`` on the given full-window latents; returns ``(B, D, sample_size)``."""
    from diffusers import StableAudioPipeline

    pipe = StableAudioPipeline(vae=prior.vae, text_encoder=prior.text_encoder, projection_model=prior.projection_model,
                               tokenizer=prior.tokenizer, transformer=prior.transformer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        out = pipe(prompt, negative_prompt=negative, audio_end_in_s=seconds, num_inference_steps=steps,
                   guidance_scale=guidance, num_waveforms_per_prompt=window_latents.shape[0],
                   latents=window_latents.clone(), output_type="latent")
    return out.audios


def _scheduler_config(tiny_components) -> dict:
    return {k: v for k, v in tiny_components["scheduler_config"].items() if not k.startswith("_")}


@pytest.mark.parametrize("negative,guidance", [(None, 3.0), ("noise", 5.0)])
def test_one_step_full_window_equals_the_pipeline(tiny_prior, clip_prior, tiny_components, negative, guidance):
    from diffusers import CosineDPMSolverMultistepScheduler

    p = tiny_prior
    t = torch.tensor([0.6, 0.6])
    x_t = _noisy(p, t)
    cond = p.condition("bell metal", negative=negative, seconds=0.3)
    window = p.window_latents(x_t, t)
    assert window.shape == (2, p.latent_channels, 256)
    sigmas = p.edm.chain_sigmas(t[:1], 1)[:, 0]
    scheduler = _scheduler_on_grid(CosineDPMSolverMultistepScheduler, _scheduler_config(tiny_components), sigmas)
    reference = _pipeline_latents(p, scheduler, window, "bell metal", negative, 0.3, guidance, steps=1)
    ours = p.denoise(x_t, t, cond, guidance_scale=guidance, steps=1)
    assert ours.shape == x_t.shape
    torch.testing.assert_close(ours, reference[..., :N_CLIP], rtol=1e-4, atol=1e-5)
    # the clip-only window is a different computation (the DiT attends over the window)
    short = clip_prior.denoise(x_t, t, clip_prior.condition("bell metal", negative=negative, seconds=0.3), guidance)
    assert (ours - short).abs().max() > 1e-3


def test_three_step_full_window_chain_equals_the_pipeline_ode_solver(tiny_prior, tiny_components):
    from diffusers import EDMDPMSolverMultistepScheduler

    p = tiny_prior
    t, guidance, steps = torch.tensor([0.8, 0.8]), 4.0, 3
    x_t = _noisy(p, t, seed=1)
    cond = p.condition("snare", seconds=0.2)
    config = {"sigma_min": p.edm.sigma_min, "sigma_max": p.edm.sigma_max, "sigma_data": p.edm.sigma_data,
              "prediction_type": p.edm.prediction_type, "solver_order": 2, "algorithm_type": "dpmsolver++",
              "solver_type": "midpoint", "final_sigmas_type": "zero", "lower_order_final": True}
    scheduler = _scheduler_on_grid(EDMDPMSolverMultistepScheduler, config, p.edm.chain_sigmas(t[:1], steps)[:, 0],
                                   atan_conditioning=True)
    reference = _pipeline_latents(p, scheduler, p.window_latents(x_t, t), "snare", None, 0.2, guidance, steps)
    ours = p.denoise(x_t, t, cond, guidance_scale=guidance, steps=steps)
    torch.testing.assert_close(ours, reference[..., :N_CLIP], rtol=1e-4, atol=1e-4)
    assert (ours - p.denoise(x_t, t, cond, guidance_scale=guidance, steps=1)).abs().max() > 1e-3


def test_window_latents_are_the_clip_then_noisy_silence(tiny_prior, clip_prior):
    p = tiny_prior
    t = torch.tensor([0.3, 0.7])
    x_t = _noisy(p, t, seed=2)
    window = p.window_latents(x_t, t)
    assert torch.equal(window[..., :N_CLIP], x_t)
    silence = p.window.silence(p)
    assert silence.shape == (p.latent_channels,)
    eps = (window[..., N_CLIP:] - silence[None, :, None]) / p.sigma(t)[:, None, None]
    assert eps.abs().mean(dim=(1, 2)).min() > 0.5  # noised at each item's own level: both ~0.8
    assert abs(eps.mean().item()) < 0.1 and 0.9 < eps.std().item() < 1.1
    # a function of the input: the same latents give the same window, an item does not see the batch
    assert torch.equal(p.window_latents(x_t, t), window)
    assert torch.equal(p.window_latents(x_t[1:], t[1:]), window[1:])
    other = p.window_latents(_noisy(p, t, seed=3), t)
    assert (other[..., N_CLIP:] - window[..., N_CLIP:]).abs().mean() > 0.1  # fresh draws, fresh padding noise
    # the clip window and a clip that fills the window are left as they are
    assert torch.equal(clip_prior.window_latents(x_t, t), x_t)
    full_clip = _noisy(p, t, frames=256, seed=4)
    assert torch.equal(p.window_latents(full_clip, t), full_clip)


def test_silence_latent_is_what_encoding_zero_padded_audio_gives(tiny_prior):
    """The pipeline's audio-to-audio path zero-pads the audio to the window and encodes it; past the
    encoder's reach from the clip's end, its frames are the silence latent."""
    p = tiny_prior
    audio = 0.3 * torch.randn(1, 2, N_CLIP * p.hop_length, generator=torch.Generator().manual_seed(5))
    padded = torch.nn.functional.pad(audio, (0, (96 - N_CLIP) * p.hop_length))
    with torch.no_grad():
        z = p.encode(padded)[0]
    silence = p.window.silence(p)
    reach = 24  # frames; the tiny encoder's dilated convolutions see about 18 frames to each side
    far = z[:, N_CLIP + reach:96 - reach]
    torch.testing.assert_close(far, silence[:, None].expand_as(far), rtol=0, atol=1e-5)
    assert (z[:, N_CLIP + 1] - silence).abs().max() > 1e-3  # near the clip's end the clip still shows
    assert (z[:, :N_CLIP] - silence[:, None]).abs().max() > 1e-2  # the clip itself is not silence


def test_denoise_is_a_function_of_its_input_and_of_each_item_alone(tiny_prior):
    p = tiny_prior
    t = torch.tensor([0.4, 0.9])
    x_t = _noisy(p, t, seed=6)
    cond = p.condition("kick drum", seconds=0.2)
    both = p.denoise(x_t, t, cond, 3.0, steps=2)
    torch.testing.assert_close(p.denoise(x_t, t, cond, 3.0, steps=2), both, rtol=0, atol=0)
    torch.testing.assert_close(p.denoise(x_t[1:], t[1:], cond, 3.0, steps=2), both[1:], rtol=1e-5, atol=1e-6)


def test_a_clip_that_fills_the_window_is_denoised_the_same_either_way(tiny_prior, clip_prior):
    t = torch.tensor([0.5])
    x_t = _noisy(tiny_prior, t, batch=1, frames=256, seed=7)
    full = tiny_prior.denoise(x_t, t, tiny_prior.condition("pad", seconds=0.5), 3.0)
    clip = clip_prior.denoise(x_t, t, clip_prior.condition("pad", seconds=0.5), 3.0)
    torch.testing.assert_close(full, clip, rtol=1e-5, atol=1e-6)


def test_window_option_is_checked(tiny_builder):
    assert check_window("full") == "full" and check_window("clip") == "clip"
    with pytest.raises(SDSAudioError, match="window must be 'full'"):
        tiny_builder["prior"](window="half")
    with pytest.raises(SDSAudioError, match="at least one latent frame"):
        LatentWindow("full", 0, 8)
    assert LatentWindow("full", 256, 8).n_pad(20) == 236 and LatentWindow("clip", 256, 8).n_pad(20) == 0
    assert LatentWindow("full", 256, 8).n_pad(300) == 0


def test_padding_noise_is_seeded_by_each_item():
    x = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(8))
    noise = padding_noise(x, 7)
    assert noise.shape == (3, 4, 7)
    torch.testing.assert_close(noise[1], padding_noise(x[1:2], 7)[0], rtol=0, atol=0)
    seeds = {item_seed(x[b]) for b in range(3)}
    assert len(seeds) == 3 and all(0 <= s < 2 ** 63 for s in seeds)
    y = x.clone()
    y[0, 0, 0] += 1e-6
    assert item_seed(y[0]) != item_seed(x[0]) and item_seed(y[1]) == item_seed(x[1])
