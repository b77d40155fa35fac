"""``generate``: text -> audio with the embedded prior (codec + flow model + MiniLM).

Starts from Gaussian noise in the prior's (normalised) latent space, integrates
the guided flow from ``s = 0`` to 1 (Euler or midpoint, sway-warped steps by
default, as F5-TTS does for few-step sampling) and decodes with the codec.
This is what ``sds-audio generate "PROMPT" -o OUT.wav`` runs.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from ..errors import SDSAudioError
from .guidance import guided_velocity
from .samplers import integrate, time_grid


@torch.no_grad()
def generate(prompt: str, *, seconds: float | None = None, steps: int = 32, cfg: float = 4.0, seed: int = 0,
             negative: str | None = None, method: str = "euler", sway_coef: float | None = -1.0,
             prior: Any = None, assets_dir: str | os.PathLike | None = None,
             device: torch.device | str | None = None, progress: bool = True) -> torch.Tensor:
    """Generate ``seconds`` of audio for ``prompt``.

    Args:
        prompt: what the sound is.
        seconds: duration (default: the model's training window); at most
            twice the window.
        steps: ODE steps (each one batched forward with CFG; midpoint costs two).
        cfg: classifier-free guidance scale (1 = no guidance).
        seed: seeds the initial noise.
        negative: negative prompt (replaces the unconditional branch).
        method: ``"euler"`` or ``"midpoint"``.
        sway_coef: sway-sampling coefficient (None or 0: uniform steps).
        prior: an :class:`~sds_audio.priors.embedded.EmbeddedPrior` (default:
            loaded from ``assets_dir`` / the shipped assets).
        device: device for a prior loaded here.
        progress: show a progress bar over the steps.

    Returns:
        Audio ``(1, 1, round(seconds * sample_rate))`` float32 at the prior's sample rate.

    Raises:
        SDSAudioError: empty prompt, bad settings, missing weights.
    """
    if prior is None:
        from ..priors.embedded import load_embedded_prior

        # the clip is the product here, not an SDS target: decode it at full precision
        prior = load_embedded_prior(device=device, assets_dir=assets_dir, codec_precision="float32")
    seconds = prior.max_duration_s if seconds is None else float(seconds)
    if not 0 < seconds <= 2 * prior.max_duration_s:
        raise SDSAudioError(f"seconds must lie in (0, {2 * prior.max_duration_s:g}] for this model "
                            f"(trained on {prior.max_duration_s:g} s windows), got {seconds}")
    if steps < 1:
        raise SDSAudioError(f"steps must be >= 1, got {steps}")
    cond = prior.condition(prompt, negative=negative, seconds=seconds)
    n_samples = int(round(seconds * prior.sample_rate))
    n_frames = prior.latent_length(n_samples)
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(1, prior.latent_channels, n_frames, generator=generator).to(prior.device, prior.dtype)
    c, u = prior.flow_conditions(cond, n_frames)
    velocity = guided_velocity(prior.flow, c, u, float(cfg))
    latents = integrate(velocity, noise, time_grid(int(steps), 0.0, 1.0, sway_coef), method, progress=progress)
    audio = prior.decode(latents)[..., :n_samples]
    return audio.float().cpu()
