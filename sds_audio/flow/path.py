"""Conditional flow matching on the linear (optimal-transport) path.

Flow time ``s`` runs from 0 (pure noise) to 1 (data)::

    x_s = (1 - s) * noise + s * data          velocity  u = dx_s/ds = data - noise

The network regresses ``u`` (Lipman et al. 2023, "Flow Matching for Generative
Modeling"; rectified flow, Liu et al. 2023). The training density of ``s`` is
logit-normal by default, ``s = sigmoid(n)``, ``n ~ N(mean, std)`` (Esser et al.
2024, SD3), which spends more updates on the middle of the path where the
velocity is hardest to predict and fewer at the two ends where it is nearly
determined by the input; ``"uniform"`` is kept for ablations.

The library's noise level ``t`` (0 clean, 1 noise; see
:mod:`sds_audio.priors.base`) is ``t = 1 - s``, so ``x_t = t * noise + (1 - t) * data``
and the clean estimate from a velocity is ``x0_hat = x_t + t * v``.
"""

from __future__ import annotations

import torch

from ..errors import SDSAudioError


def interpolate(noise: torch.Tensor, data: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Point of the path at flow time ``s`` ``(B,)``: ``(1 - s) * noise + s * data`` (``(B, ...)``)."""
    s = s.reshape(-1, *([1] * (data.dim() - 1))).to(data)
    return (1.0 - s) * noise + s * data


def target_velocity(noise: torch.Tensor, data: torch.Tensor) -> torch.Tensor:
    """The path's constant velocity ``data - noise``."""
    return data - noise


def clean_from_velocity(x_s: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Data estimate of one Euler step to ``s = 1``: ``x_s + (1 - s) * v``."""
    s = s.reshape(-1, *([1] * (x_s.dim() - 1))).to(x_s)
    return x_s + (1.0 - s) * v


def noise_from_velocity(x_s: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Noise estimate of one Euler step back to ``s = 0``: ``x_s - s * v``."""
    s = s.reshape(-1, *([1] * (x_s.dim() - 1))).to(x_s)
    return x_s - s * v


def sample_time(batch_size: int, generator: torch.Generator | None = None, mode: str = "logit_normal",
                mean: float = 0.0, std: float = 1.0, device: torch.device | str | None = None) -> torch.Tensor:
    """Draw ``(B,)`` training flow times in (0, 1).

    Args:
        mode: ``"logit_normal"`` (``sigmoid(N(mean, std))``) or ``"uniform"``.
        generator: CPU generator (draws are made on the CPU and moved, so a
            seed gives the same times on any device).
    """
    if mode == "logit_normal":
        s = torch.sigmoid(torch.randn(batch_size, generator=generator) * std + mean)
    elif mode == "uniform":
        s = torch.rand(batch_size, generator=generator)
    else:
        raise SDSAudioError(f"time sampling must be 'logit_normal' or 'uniform', got {mode!r}")
    return s.to(device)


def cfm_loss(v_pred: torch.Tensor, noise: torch.Tensor, data: torch.Tensor,
             mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error between the predicted and the path velocity.

    Args:
        v_pred, noise, data: ``(B, D, L)``.
        mask: optional ``(B, L)`` bool / float weights over frames; the loss is
            then the mean over the masked frames (and all channels).

    Returns:
        Scalar loss ``mean((v_pred - (data - noise))^2)``.
    """
    err = (v_pred.float() - target_velocity(noise, data).float()).pow(2)
    if mask is None:
        return err.mean()
    w = mask.to(err.dtype).unsqueeze(1)
    return (err * w).sum() / (w.sum() * err.shape[1]).clamp_min(1.0)
