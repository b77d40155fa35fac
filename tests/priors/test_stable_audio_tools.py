"""StableAudioToolsPrior: what can be checked without stable-audio-tools installed."""

from __future__ import annotations

import sys

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.priors.stable_audio_tools import (StableAudioToolsPrior, conditioning_metadata, noise_form,
                                                 require_stable_audio_tools)

SMALL_LIKE = {
    "model_type": "diffusion_cond", "sample_rate": 44100, "sample_size": 524288, "audio_channels": 2,
    "model": {"diffusion": {"diffusion_objective": "rf_denoiser"},
              "conditioning": {"configs": [{"id": "prompt", "type": "t5"},
                                           {"id": "seconds_total", "type": "number"}]}},
}


def test_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "stable_audio_tools", None)
    with pytest.raises(SDSAudioError, match=r"pip install 'sds-audio\[sat\]'"):
        require_stable_audio_tools()
    with pytest.raises(SDSAudioError, match="own environment"):
        StableAudioToolsPrior.from_pretrained("stabilityai/stable-audio-open-small")


def test_noise_form_mapping():
    assert noise_form(SMALL_LIKE) == "flow"
    one = {**SMALL_LIKE, "model": {**SMALL_LIKE["model"], "diffusion": {"diffusion_objective": "v"}}}
    assert noise_form(one) == "v"
    no_objective = {**SMALL_LIKE, "model": {"conditioning": SMALL_LIKE["model"]["conditioning"]}}
    assert noise_form(no_objective) == "v"  # stable-audio-tools' default objective
    with pytest.raises(SDSAudioError, match="diffusion_cond"):
        noise_form({**SMALL_LIKE, "model_type": "autoencoder"})
    with pytest.raises(SDSAudioError, match="diffusion_objective"):
        noise_form({**SMALL_LIKE, "model": {"diffusion": {"diffusion_objective": "edm"}}})


def test_conditioning_metadata_follows_the_config():
    assert conditioning_metadata(SMALL_LIKE, "kick", 2.0) == [{"prompt": "kick", "seconds_total": 2.0}]
    with_start = {**SMALL_LIKE, "model": {**SMALL_LIKE["model"], "conditioning": {"configs": [
        {"id": "prompt"}, {"id": "seconds_start"}, {"id": "seconds_total"}]}}}
    assert conditioning_metadata(with_start, "kick", 2.0) == [
        {"prompt": "kick", "seconds_start": 0.0, "seconds_total": 2.0}]
    with pytest.raises(SDSAudioError, match="prompt"):
        conditioning_metadata({**SMALL_LIKE, "model": {"conditioning": {"configs": [{"id": "seconds_total"}]}}},
                              "kick", 1.0)


# -- the denoising window, on a stand-in for a stable-audio-tools model ---------------------

HOP = 4
LATENT = 3


class _StandInAutoencoder(torch.nn.Module):
    """Frame means mapped to ``LATENT`` channels with a bias (so silence has a non-zero latent)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter(torch.randn(LATENT, 2, generator=g))
        self.bias = torch.nn.Parameter(torch.randn(LATENT, generator=g))

    def encode(self, audio, skip_bottleneck=False):
        frames = audio.reshape(audio.shape[0], audio.shape[1], -1, HOP).mean(-1)
        return torch.einsum("dc,bcl->bdl", self.weight, frames) + self.bias[:, None]


class _StandInPretransform(torch.nn.Module):
    downsampling_ratio = HOP
    scale = 2.0

    def __init__(self):
        super().__init__()
        self.model = _StandInAutoencoder()


class _StandInDiT(torch.nn.Module):
    """An output that mixes every frame of its input (as attention does); records input lengths."""

    def __init__(self):
        super().__init__()
        self.lengths: list[int] = []

    def forward(self, x, t, cfg_scale=1.0, batch_cfg=True, **cond):
        self.lengths.append(x.shape[-1])
        return 0.5 * x + t.reshape(-1, 1, 1) * x.mean(-1, keepdim=True)


class _StandInModel(torch.nn.Module):
    io_channels = LATENT

    def __init__(self):
        super().__init__()
        self.pretransform = _StandInPretransform()
        self.model = _StandInDiT()


@pytest.mark.parametrize("objective", ["v", "rf_denoiser"])
def test_full_window_pads_with_noisy_silence_and_crops(objective):
    from sds_audio.priors.base import Conditioning

    config = {**SMALL_LIKE, "sample_rate": 400, "sample_size": 64 * HOP,
              "model": {**SMALL_LIKE["model"], "diffusion": {"diffusion_objective": objective}}}
    full = StableAudioToolsPrior(_StandInModel(), config, device="cpu")
    clip = StableAudioToolsPrior(_StandInModel(), config, device="cpu", window="clip")
    assert (full.window.mode, full.window.n_frames, clip.window.mode) == ("full", 64, "clip")
    torch.testing.assert_close(full.window.silence(full), full.model.pretransform.model.bias / 2.0)
    g = torch.Generator().manual_seed(1)
    t = torch.tensor([0.4, 0.7])
    x_t = full.add_noise(torch.randn(2, LATENT, 10, generator=g), torch.randn(2, LATENT, 10, generator=g), t)
    cond = Conditioning(prompt="kick", negative=None, seconds=0.1)
    got = full.denoise(x_t, t, cond, guidance_scale=1.0, steps=1)
    assert full.model.model.lengths == [64] and got.shape == x_t.shape
    window = full.window_latents(x_t, t)
    assert window.shape == (2, LATENT, 64) and torch.equal(window[..., :10], x_t)
    silence = full.window.silence(full)[None, :, None]
    s = full.sigma(t).reshape(-1, 1, 1)
    eps = (window[..., 10:] - silence) / s if objective == "v" else (window[..., 10:] - (1 - s) * silence) / s
    assert 0.8 < eps.std().item() < 1.2
    if objective == "v":
        sigma = full.sigma(t)
        out = full.model.model(full.edm.c_in(sigma).reshape(-1, 1, 1) * window, full.edm.c_noise(sigma))
        want = full.edm.x0_from_output(window, out, sigma)
    else:
        want = window - s * full.model.model(window, t)
    torch.testing.assert_close(got, want[..., :10])
    short = clip.denoise(x_t, t, cond, guidance_scale=1.0, steps=3)
    assert clip.model.model.lengths == [10, 10, 10]
    assert (short - full.denoise(x_t, t, cond, guidance_scale=1.0, steps=3)).abs().max() > 1e-3
