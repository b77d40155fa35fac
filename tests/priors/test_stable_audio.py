"""StableAudioOpenPrior on a tiny randomly initialised Stable Audio Open (built offline, see conftest).

The clean-estimate oracles here run the DiT on the clip's frames, so they use a
``window="clip"`` prior; the full-window path (the default) is checked against
the pipeline itself in ``test_stable_audio_window.py``.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.priors import load_prior
from sds_audio.priors.stable_audio import StableAudioOpenPrior
from sds_audio.sds import SDSConfig, SDSObjective


@pytest.fixture(scope="module")
def clip_prior(tiny_builder):
    return tiny_builder["prior"](window="clip")


def _latents(prior, batch=2, frames=20, seed=0):
    return torch.randn(batch, prior.latent_channels, frames, generator=torch.Generator().manual_seed(seed))


def test_properties(tiny_prior):
    p = tiny_prior
    assert (p.sample_rate, p.channels, p.latent_channels, p.hop_length) == (4000, 2, 4, 8)
    assert p.latent_rate == pytest.approx(500.0)
    assert p.max_duration_s == pytest.approx(256 * 8 / 4000)
    assert p.latent_length(1001) == 126 and p.latent_length(1000) == 125
    assert not any(q.requires_grad for q in p.transformer.parameters())
    assert not p.vae.training and not p.transformer.training


def test_encode_is_posterior_mean_and_decode_keeps_padded_length(tiny_prior):
    p = tiny_prior
    x = 0.3 * torch.randn(2, 2, 1001, generator=torch.Generator().manual_seed(1))
    z = p.encode(x)
    assert z.shape == (2, 4, 126) and z.dtype == torch.float32
    padded = torch.nn.functional.pad(x, (0, 7))
    with torch.no_grad():
        dist = p.vae.encode(padded).latent_dist
    assert torch.allclose(z, dist.mean, atol=1e-6)
    assert not torch.allclose(z, dist.sample(torch.Generator().manual_seed(0)), atol=1e-3)
    assert p.decode(z).shape == (2, 2, 1008)
    bad = x.clone()
    bad[0, 0, 5] = float("inf")
    with pytest.raises(SDSAudioError, match="NaN or infinite"):
        p.encode(bad)


def test_encode_passes_gradients_for_latent_sds(tiny_prior):
    x = (0.3 * torch.randn(1, 2, 200, generator=torch.Generator().manual_seed(2))).requires_grad_(True)
    tiny_prior.encode(x).square().sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_condition_is_cached_and_validated(tiny_prior):
    p = tiny_prior
    a = p.condition("kick drum bass", seconds=0.25)
    assert p.condition("kick drum bass", seconds=0.25) is a
    assert a.tensors["cond_tokens"].shape == (1, 12 + 2, 8)
    assert a.tensors["global_states"].shape == (1, 1, 16)
    assert torch.count_nonzero(a.tensors["uncond_tokens"]) == 0  # no negative prompt: zero tokens
    neg = p.condition("kick drum bass", negative="noise", seconds=0.25)
    assert torch.count_nonzero(neg.tensors["uncond_tokens"]) > 0
    for bad in ("", "   "):
        with pytest.raises(SDSAudioError, match="empty"):
            p.condition(bad)
    with pytest.raises(SDSAudioError, match="longer than"):
        p.condition("kick", seconds=1.0)
    with pytest.raises(SDSAudioError):
        p.condition("kick", seconds=0.0)


def test_long_prompt_is_truncated_with_warning(tiny_prior):
    long_prompt = " ".join(["kick drum"] * 20)
    with pytest.warns(UserWarning, match="tokens"):
        c = tiny_prior.condition(long_prompt, seconds=0.2)
    truncated = tiny_prior.condition(" ".join(["kick drum"] * 6), seconds=0.2)  # exactly 12 tokens
    assert torch.allclose(c.tensors["cond_tokens"], truncated.tensors["cond_tokens"])


def _pipeline_x0(components, prior, x, sigma, prompt, negative, seconds, guidance):
    """The clean estimate computed the pipeline's way: its encode_prompt / encode_duration and the
    scheduler's own precondition_inputs / _noise / _outputs."""
    from diffusers import CosineDPMSolverMultistepScheduler, StableAudioPipeline
    from diffusers.models.embeddings import get_1d_rotary_pos_embed

    config = {k: v for k, v in components["scheduler_config"].items() if not k.startswith("_")}
    scheduler = CosineDPMSolverMultistepScheduler(**config)
    pipe = StableAudioPipeline(vae=prior.vae, text_encoder=prior.text_encoder,
                               projection_model=prior.projection_model, tokenizer=prior.tokenizer,
                               transformer=prior.transformer, scheduler=scheduler)
    with torch.no_grad():
        embeds = pipe.encode_prompt(prompt, "cpu", True, negative_prompt=negative)
        start, end = pipe.encode_duration(0.0, seconds, "cpu", negative is not None, 1)
        tokens = torch.cat([embeds, start, end], dim=1)
        global_states = torch.cat([start, end], dim=2)
        if negative is None:
            tokens = torch.cat([torch.zeros_like(tokens), tokens])
            global_states = torch.cat([global_states, global_states])
        b = x.shape[0]
        tokens = tokens.repeat_interleave(b, 0)
        global_states = global_states.repeat_interleave(b, 0)
        rotary = get_1d_rotary_pos_embed(prior.transformer.config.attention_head_dim // 2, x.shape[-1] + 1,
                                         use_real=True, repeat_interleave_real=False)
        x_in = scheduler.precondition_inputs(torch.cat([x, x]), sigma)
        out = prior.transformer(x_in, scheduler.precondition_noise(sigma), encoder_hidden_states=tokens,
                                global_hidden_states=global_states, rotary_embedding=rotary).sample
        out_uncond, out_cond = out.chunk(2)
        return scheduler.precondition_outputs(x, out_uncond + guidance * (out_cond - out_uncond), sigma)


@pytest.mark.parametrize("negative,guidance", [(None, 3.0), ("noise", 5.0)])
def test_one_step_denoise_equals_pipeline_clean_estimate(clip_prior, tiny_components, negative, guidance):
    p = clip_prior
    z = _latents(p)
    t = torch.tensor([0.6, 0.6])
    x_t = p.add_noise(z, torch.randn_like(z), t)
    cond = p.condition("bell metal", negative=negative, seconds=0.3)
    ours = p.denoise(x_t, t, cond, guidance_scale=guidance, steps=1)
    sigma = p.sigma(torch.tensor([0.6]))
    reference = _pipeline_x0(tiny_components, p, x_t, sigma, "bell metal", negative, 0.3, guidance)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-5)


def test_two_step_chain(clip_prior):
    p = clip_prior
    z = _latents(p, batch=1)
    t = torch.tensor([0.7])
    x_t = p.add_noise(z, torch.randn_like(z), t)
    cond = p.condition("snare", seconds=0.2)
    s0, s1 = p.sigma(t), p.sigma(t / 2)
    with torch.no_grad():
        d0 = p.edm.x0_from_output(x_t, p.model_output(x_t, s0, cond, 4.0), s0)
        x1 = (s1 / s0) * x_t + (1 - s1 / s0) * d0
        expected = p.edm.x0_from_output(x1, p.model_output(x1, s1, cond, 4.0), s1)
    assert torch.allclose(p.denoise(x_t, t, cond, 4.0, steps=2), expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(p.denoise(x_t, t, cond, 4.0, steps=1), expected, atol=1e-3)


def test_seconds_conditioning_reaches_the_dit(tiny_prior):
    p = tiny_prior
    x, sigma = _latents(p), p.sigma(torch.tensor([0.5, 0.5]))
    with torch.no_grad():
        short = p.model_output(x, sigma, p.condition("pad", seconds=0.05), 1.0)
        again = p.model_output(x, sigma, p.condition("pad", seconds=0.05), 1.0)
        long = p.model_output(x, sigma, p.condition("pad", seconds=0.45), 1.0)
    assert torch.equal(short, again)
    assert (short - long).abs().max() > 1e-3 * short.abs().max()


def test_batched_guidance_equals_separate_forwards(tiny_prior):
    p = tiny_prior
    x, sigma = _latents(p), p.sigma(torch.tensor([0.3, 0.8]))
    cond = p.condition("wood hit", negative="glass", seconds=0.2)
    with torch.no_grad():
        batched = p.model_output(x, sigma, cond, 6.0, batched=True)
        separate = p.model_output(x, sigma, cond, 6.0, batched=False)
        cond_only = p.model_output(x, sigma, cond, 1.0)
        uncond = p._network(p.edm.c_in(sigma)[:, None, None] * x, p.edm.c_noise(sigma),
                            cond.tensors["uncond_tokens"], cond.tensors["global_states"])
    assert torch.allclose(batched, separate, rtol=1e-5, atol=1e-6)
    assert torch.allclose(batched, uncond + 6.0 * (cond_only - uncond), rtol=1e-4, atol=1e-5)


def test_noise_round_trip(tiny_prior):
    p = tiny_prior
    z = _latents(p)
    noise = torch.randn_like(z)
    t = torch.tensor([0.2, 0.9])
    x_t = p.add_noise(z, noise, t)
    assert torch.allclose(p.noise_from_x0(x_t, z, t), noise, atol=1e-4)
    with pytest.raises(SDSAudioError):
        p.add_noise(z, noise, torch.tensor([0.0, 0.5]))


@pytest.mark.parametrize("objective", ["decoder", "latent"])
def test_sds_loop_ten_iterations(tiny_prior, objective):
    """A learnable 8 kHz mono waveform through the 4 kHz stereo prior: resampling, CFG, 2-step chain."""
    gen = torch.Generator().manual_seed(5)
    wave = torch.nn.Parameter(0.2 * torch.randn(2, 1, 1600, generator=gen))
    start = wave.detach().clone()
    opt = torch.optim.Adam([wave], lr=1e-3)
    cfg = SDSConfig(objective=objective, guidance_scale=3.0, denoise_steps=2, n_draws=2, n_ffts=(32, 64, 128),
                    t_schedule="linear", negative_prompt="noise")
    sds = SDSObjective(tiny_prior, "bright bell", cfg)
    for step in range(10):
        result = sds(wave, 8000, progress=step / 10)
        opt.zero_grad()
        result.loss.backward()
        assert torch.isfinite(wave.grad).all() and wave.grad.abs().sum() > 0
        assert torch.isfinite(result.loss) and (result.grad_norm > 0).all()
        opt.step()
    assert result.x_hat.shape == (2, 2, 800) and result.sample_rate == 4000
    assert result.t.shape == (2, 2) and result.t[0, 0].item() == pytest.approx(0.98 - 0.96 * 0.9)
    assert (wave.detach() - start).abs().max() > 1e-4


def test_bfloat16_close_to_float32(tiny_prior, tiny_builder):
    p16 = tiny_builder["prior"](dtype=torch.bfloat16)
    z = _latents(tiny_prior)
    t = torch.tensor([0.5, 0.5])
    x_t = tiny_prior.add_noise(z, torch.randn_like(z), t)
    ref = tiny_prior.denoise(x_t, t, tiny_prior.condition("kick", seconds=0.2), 3.0)
    low = p16.denoise(x_t, t, p16.condition("kick", seconds=0.2), 3.0)
    assert low.dtype == torch.float32
    assert (low - ref).norm() / ref.norm() < 0.05
    with pytest.raises(SDSAudioError, match="float16"):
        tiny_builder["prior"](dtype=torch.float16)


def _save_diffusers_layout(components, root):
    from diffusers import CosineDPMSolverMultistepScheduler

    for name in ("vae", "transformer", "text_encoder", "tokenizer", "projection_model"):
        components[name].save_pretrained(root / name)
    config = {k: v for k, v in components["scheduler_config"].items() if not k.startswith("_")}
    CosineDPMSolverMultistepScheduler(**config).save_pretrained(root / "scheduler")


def test_from_pretrained_local_directory(tmp_path, tiny_prior, tiny_builder):
    _save_diffusers_layout(tiny_builder["components"](), tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loaded = StableAudioOpenPrior.from_pretrained(tmp_path, device="cpu")
        via_registry = load_prior(str(tmp_path), device="cpu")
        clip = load_prior(str(tmp_path), device="cpu", window="clip")
    assert isinstance(via_registry, StableAudioOpenPrior)
    assert loaded.edm == tiny_prior.edm
    assert (loaded.window.mode, via_registry.window.mode, clip.window.mode) == ("full", "full", "clip")
    assert loaded.window.n_frames == 256
    z = _latents(tiny_prior)
    t = torch.tensor([0.4, 0.4])
    x_t = tiny_prior.add_noise(z, torch.randn_like(z), t)
    ref = tiny_prior.denoise(x_t, t, tiny_prior.condition("kick", seconds=0.2), 3.0)
    for prior in (loaded, via_registry):
        assert torch.allclose(prior.denoise(x_t, t, prior.condition("kick", seconds=0.2), 3.0), ref, atol=1e-5)


def test_missing_weights_give_advice(tmp_path):
    (tmp_path / "vae").mkdir()
    with pytest.raises(SDSAudioError, match="missing"):
        StableAudioOpenPrior.from_pretrained(tmp_path, device="cpu")
    with pytest.raises(SDSAudioError, match="does not exist"):
        StableAudioOpenPrior.from_pretrained(tmp_path / "nope" / "deeper", device="cpu")
    # a hub id that is in no cache, without permission to download: advice, no network
    with pytest.raises(SDSAudioError, match="huggingface-cli download"):
        StableAudioOpenPrior.from_pretrained("sds-audio-tests/no-such-model", device="cpu")


def test_broken_directory_names_the_problem(tmp_path, tiny_builder):
    _save_diffusers_layout(tiny_builder["components"](), tmp_path)
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDIMScheduler"}))
    with pytest.raises(SDSAudioError, match="not an EDM scheduler"):
        StableAudioOpenPrior.from_pretrained(tmp_path, device="cpu")
    for f in (tmp_path / "transformer").iterdir():
        if f.suffix == ".safetensors":
            f.unlink()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name":
                                                                               "CosineDPMSolverMultistepScheduler"}))
    with pytest.raises(SDSAudioError, match="cannot load Stable Audio Open"):
        StableAudioOpenPrior.from_pretrained(tmp_path, device="cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_offload_matches_resident(tiny_builder, dtype):
    resident = StableAudioOpenPrior(**tiny_builder["components"](), device="cuda", dtype=dtype)
    offload = StableAudioOpenPrior(**tiny_builder["components"](), device="cuda", dtype=dtype, cpu_offload=True)
    assert next(offload.transformer.parameters()).device.type == "cpu"
    x = 0.3 * torch.randn(2, 2, 800, generator=torch.Generator().manual_seed(0))
    outs = []
    for p in (resident, offload):
        z = p.encode(x.cuda())
        t = torch.tensor([0.5, 0.5])
        x0 = p.denoise(p.add_noise(z, torch.ones_like(z), t), t, p.condition("kick", seconds=0.2), 3.0, steps=2)
        outs.append(p.decode(x0))
    assert torch.allclose(outs[0], outs[1], atol=1e-3)
    assert next(offload.transformer.parameters()).device.type == "cpu"
