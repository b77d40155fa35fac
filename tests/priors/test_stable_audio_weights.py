"""Stable Audio Open 1.0 with its real weights (marker ``weights``; skipped where the weights are absent).

Where the weights come from, first found:

1. ``SDS_AUDIO_SAO_PATH``: a local directory in diffusers layout (``vae/``,
   ``transformer/``, ``text_encoder/``, ``tokenizer/``, ``projection_model/``,
   ``scheduler/``), e.g. made by ``huggingface-cli download
   stabilityai/stable-audio-open-1.0 --local-dir DIR`` after accepting the licence.
2. ``stabilityai/stable-audio-open-1.0`` in the local Hugging Face cache
   (``HF_HOME`` / ``HF_HUB_CACHE``), read with local files only.

Nothing is downloaded. The models run in float32 on ``SDS_AUDIO_SAO_DEVICE``
(default: CUDA when available, else the CPU, where the full 1024-frame window
makes each test take minutes). The prior denoises its default full window.

The test sound is a plucked-string-like tone (220 Hz, eight harmonics,
exponential decay, 5 ms attack), stereo, 2 s at the prior's rate.

The thresholds are floors chosen before any run on the real weights (as of
2026-12-07 these tests have not run on them), so they state what a working model
must at least do, not what it measures:

* the VAE round trip keeps at least ``MIN_ROUND_TRIP_SI_SDR_DB`` of SI-SDR on
  this clean harmonic tone (the fast tests' tiny random components score -45 dB);
* at ``t = 0.3`` (sigma 0.51) the clean estimate's latent error is below
  ``MAX_XHAT_ERROR_RATIO`` times the noisy input's. The network's skip path
  alone (``c_skip * x_t``, a zero network output) reaches 0.79 of it or more,
  and the best structure-blind (Gaussian) estimate for unit-variance latents
  0.89, so passing needs the network's knowledge of the sound.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch

from sds_audio.metrics import si_sdr
from sds_audio.priors.stable_audio import DEFAULT_HUB_ID, StableAudioOpenPrior
from sds_audio.sds import SDSConfig, SDSObjective, prepare_audio, spectral_emphasis_loss

ENV_PATH = "SDS_AUDIO_SAO_PATH"
ENV_DEVICE = "SDS_AUDIO_SAO_DEVICE"
PROMPT = "plucked string, single note"
DURATION_S = 2.0
MIN_ROUND_TRIP_SI_SDR_DB = 5.0
MAX_XHAT_ERROR_RATIO = 0.6


def weights_source() -> str | None:
    """The directory named by ``SDS_AUDIO_SAO_PATH``, else the hub id when its files are cached, else None."""
    path = os.environ.get(ENV_PATH, "").strip()
    if path:
        return str(Path(path).expanduser())
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    cached = all(isinstance(try_to_load_from_cache(DEFAULT_HUB_ID, f"{sub}/config.json"), str)
                 for sub in ("vae", "transformer", "projection_model", "text_encoder"))
    return DEFAULT_HUB_ID if cached else None


SOURCE = weights_source()
pytestmark = [
    pytest.mark.weights,
    pytest.mark.skipif(SOURCE is None, reason=f"no Stable Audio Open weights: set {ENV_PATH} to a local copy in "
                                              f"diffusers layout, or download {DEFAULT_HUB_ID} into the Hugging "
                                              "Face cache"),
]


@pytest.fixture(scope="module")
def prior():
    device = os.environ.get(ENV_DEVICE) or ("cuda" if torch.cuda.is_available() else "cpu")
    return StableAudioOpenPrior.from_pretrained(SOURCE, device=device, dtype=torch.float32)


@pytest.fixture(autouse=True)
def all_threads():
    """Every CPU core for these large models (the suite's conftest restores its own setting afterwards)."""
    torch.set_num_threads(os.cpu_count() or 1)


def pluck(prior) -> torch.Tensor:
    """``(1, channels, T)`` float32 at the prior's rate: 220 Hz, 8 harmonics (1/k), decay 0.4 s, peak ~0.5."""
    sr = prior.sample_rate
    n = int(min(DURATION_S, 0.5 * prior.max_duration_s) * sr)
    time_s = torch.arange(n, dtype=torch.float64) / sr
    tone = sum(torch.sin(2 * math.pi * 220.0 * k * time_s) / k for k in range(1, 9))
    envelope = torch.exp(-time_s / 0.4) * torch.clamp(time_s / 0.005, max=1.0)
    wave = 0.5 * tone * envelope / tone.abs().max()
    return wave.float().expand(1, prior.channels, n).clone()


def test_vae_round_trip_keeps_the_waveform(prior):
    audio = pluck(prior)
    with torch.no_grad():
        z = prior.encode(audio.to(prior.device))
        back = prior.decode(z)[..., :audio.shape[-1]].cpu()
    assert z.shape == (1, prior.latent_channels, prior.latent_length(audio.shape[-1]))
    score = si_sdr(back, audio).item()
    assert score > MIN_ROUND_TRIP_SI_SDR_DB, f"VAE round trip SI-SDR {score:.2f} dB"


def test_clean_estimate_at_moderate_noise_is_close_to_its_input(prior):
    audio = pluck(prior).to(prior.device)
    with torch.no_grad():
        z = prior.encode(audio)
    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(0)).to(z.device)
    t = torch.tensor([0.3])
    z_t = prior.add_noise(z, noise, t)
    cond = prior.condition(PROMPT, seconds=audio.shape[-1] / prior.sample_rate)
    x0_hat = prior.denoise(z_t, t, cond, guidance_scale=1.0, steps=1)
    assert x0_hat.shape == z.shape and torch.isfinite(x0_hat).all()
    noisy_error = (z_t - z).norm().item()
    skip_error = (prior.edm.c_skip(prior.sigma(t)).item() * z_t - z).norm().item()  # a zero network output
    error = (x0_hat - z).norm().item()
    report = (f"|x0_hat - z| = {error:.3f}, |c_skip x_t - z| = {skip_error:.3f}, |x_t - z| = {noisy_error:.3f}, "
              f"|z| = {z.norm().item():.3f}")
    assert error < MAX_XHAT_ERROR_RATIO * noisy_error and error < skip_error, report


def test_one_sds_step_lowers_the_distance_to_its_target(prior):
    """The update of one decoder-SDS evaluation, taken as a small gradient step on the waveform, lowers the
    spectral-emphasis distance to that evaluation's own (fixed) denoised target."""
    audio = pluck(prior)
    wave = torch.nn.Parameter(audio.clone().to(prior.device))
    sds = SDSObjective(prior, PROMPT, SDSConfig(guidance_scale=7.0, denoise_steps=1, t_min=0.4, t_max=0.4, seed=0))
    result = sds(wave, prior.sample_rate)
    result.loss.backward()
    grad = wave.grad.detach()
    assert torch.isfinite(grad).all() and grad.norm() > 0
    target = [s.detach() for s in sds.emphasis(result.x_hat.to(prior.device))]  # x_hat: (1, channels, T)

    def distance(x: torch.Tensor) -> float:
        with torch.no_grad():
            return spectral_emphasis_loss(sds.emphasis(prepare_audio(x, prior.sample_rate, prior)), target).item()

    before = distance(wave.detach())
    assert before == pytest.approx(result.item_loss.item(), rel=1e-4)
    step = 0.02 * wave.detach().norm() / grad.norm()  # a 2 % change of the waveform
    after = distance(wave.detach() - step * grad)
    assert after < before, f"distance {before:.5f} -> {after:.5f}"
