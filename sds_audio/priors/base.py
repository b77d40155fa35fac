"""The Prior protocol: a frozen text-to-audio latent diffusion / flow model.

SDS never calls a pipeline's ``__call__``. It needs a handful of operations,
and every prior (Stable Audio Open through diffusers, stable-audio-tools, the
embedded codec + flow model, the oracle priors in tests) provides exactly these:

=====================================  =========================================
``sample_rate, channels``              audio the prior's autoencoder expects
``latent_channels, latent_rate``       latent layout: ``(B, latent_channels, L)``
                                       with ``L ~= seconds * latent_rate``
``max_duration_s``                     longest clip the prior was trained on
``encode(audio) -> latents``           ``(B, channels, T) -> (B, D, L)``; differentiable
                                       when grad is on (latent SDS), decoder
                                       SDS calls it under ``no_grad``
``decode(latents) -> audio``           ``(B, D, L) -> (B, channels, T)``
``condition(prompt, negative, s)``     text (and duration) conditioning, cached
``add_noise(x0, noise, t)``            forward process at noise level ``t``
``denoise(x_t, t, cond, g, steps)``    deterministic ``steps``-step chain from
                                       ``t`` to 0 with guidance ``g``; returns
                                       the clean estimate ``x0_hat``, no grad
``noise_from_x0(x_t, x0_hat, t)``      the noise estimate implied by ``x0_hat``
                                       (latent SDS needs ``eps_hat``)
=====================================  =========================================

Noise level convention: ``t`` is a float tensor of shape ``(B,)`` in ``(0, 1]``,
0 = clean and 1 = the prior's largest noise level. Each prior maps ``t`` to its
own parameterisation (a flow-matching prior interpolates
``x_t = (1 - t) * x0 + t * noise``; the EDM prior of Stable Audio Open uses
``sigma = sigma_data * tan(pi t / 2)`` capped at its ``sigma_max``, which gives
the same signal-to-noise ratio as the flow prior at ``t = 0.5``) and documents
the map in ``sigma(t)``.
The clean estimate ``x0_hat`` is the common currency between priors and SDS.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

import torch

from ..errors import SDSAudioError


@dataclass
class Conditioning:
    """What ``Prior.condition`` returns: the prompt, its settings and the prior's tensors.

    ``tensors`` is prior-specific (text embeddings, attention masks, duration
    embeddings for the conditional and unconditional branches); SDS code never
    looks inside, it only hands the object back to ``denoise``.
    """

    prompt: str
    negative: str | None
    seconds: float
    tensors: dict[str, Any] = field(default_factory=dict)


class Prior(abc.ABC):
    """A frozen text-to-audio model seen through the operations SDS needs."""

    #: registry name or a short description, for provenance in presets and reports
    name: str = "prior"
    sample_rate: int
    channels: int
    latent_channels: int
    latent_rate: float
    max_duration_s: float

    @property
    @abc.abstractmethod
    def device(self) -> torch.device: ...

    @property
    @abc.abstractmethod
    def dtype(self) -> torch.dtype: ...

    @abc.abstractmethod
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, channels, T)`` at ``sample_rate`` -> latents ``(B, latent_channels, L)`` (differentiable)."""

    @abc.abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents ``(B, latent_channels, L)`` -> audio ``(B, channels, T)``; differentiable."""

    @abc.abstractmethod
    def condition(self, prompt: str, negative: str | None = None, seconds: float | None = None) -> Conditioning:
        """Encode a prompt (and optional negative prompt) once; repeated calls hit a cache."""

    @abc.abstractmethod
    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """The prior's own noise level for ``t`` in (0, 1] (shape ``(B,)``)."""

    @abc.abstractmethod
    def add_noise(self, latents: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Forward process: noisy latents at level ``t`` (``(B,)``)."""

    @abc.abstractmethod
    def denoise(self, noisy: torch.Tensor, t: torch.Tensor, cond: Conditioning, guidance_scale: float = 7.0,
                steps: int = 1) -> torch.Tensor:
        """Deterministic ``steps``-step chain from level ``t`` down to 0 with CFG; returns ``x0_hat``."""

    @abc.abstractmethod
    def noise_from_x0(self, noisy: torch.Tensor, x0_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise ``eps_hat`` that, with ``x0_hat``, gives ``noisy`` at level ``t``."""

    def latent_length(self, n_samples: int) -> int:
        """Latent frames for ``n_samples`` audio samples (override when the codec pads)."""
        return max(1, round(n_samples * self.latent_rate / self.sample_rate))


def check_noise_levels(t: torch.Tensor | float, batch: int) -> torch.Tensor:
    """``t`` as a float32 ``(batch,)`` CPU tensor in (0, 1]; a single level is shared by the batch.

    Raises:
        ValueError: a shape that is neither ``()``, ``(1,)`` nor ``(batch,)``.
        SDSAudioError: a level outside (0, 1] or not finite.
    """
    t = torch.as_tensor(t, dtype=torch.float32).reshape(-1)
    if t.numel() == 1 and batch > 1:
        t = t.expand(batch)
    if t.numel() != batch:
        raise ValueError(f"t must have shape ({batch},), got {tuple(t.shape)}")
    if not (torch.isfinite(t).all() and (t > 0).all() and (t <= 1).all()):
        raise SDSAudioError("noise levels t must lie in (0, 1]")
    return t.cpu()
