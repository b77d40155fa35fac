"""Embeddings of scalars (flow time, duration) and rotary position embeddings.

- :func:`sinusoidal_features`: ``[cos(w_k x), sin(w_k x)]`` with log-spaced
  angular frequencies ``w_k``, the transformer timestep embedding of DiT; the
  duration embedding uses the same features of ``seconds / max_duration_s``
  (Stable Audio conditions on ``seconds_total`` through Fourier features too).
- :class:`ScalarEmbedder`: those features followed by a two-layer MLP.
- :func:`rotary_cos_sin` / :func:`apply_rotary`: rotary position embedding
  (RoPE, rotate-half layout) for self-attention over latent frames; relative
  positions only, so one model handles any sequence length.
"""

from __future__ import annotations

import torch
from torch import nn


def sinusoidal_features(x: torch.Tensor, n_features: int, min_freq: float, max_freq: float) -> torch.Tensor:
    """``(B,)`` -> ``(B, n_features)`` features ``[cos(w_k x), sin(w_k x)]``.

    Args:
        x: ``(B,)`` values.
        n_features: even output width (``n_features / 2`` frequencies).
        min_freq, max_freq: angular frequencies (radians per unit of ``x``),
            log-spaced from ``max_freq`` down to ``min_freq``.
    """
    half = n_features // 2
    exponent = torch.linspace(0.0, 1.0, half, device=x.device, dtype=torch.float32)
    freqs = max_freq * (min_freq / max_freq) ** exponent
    angles = x.float().reshape(-1, 1) * freqs.reshape(1, -1)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


class ScalarEmbedder(nn.Module):
    """Scalar -> ``(B, width)``: sinusoidal features, then Linear-SiLU-Linear.

    Args:
        width: output width.
        n_features: number of sinusoidal features.
        min_freq, max_freq: angular frequency range of the features (per unit of the input).
        scale: the input is multiplied by this first (``1 / max_duration_s`` for durations).
    """

    def __init__(self, width: int, n_features: int, min_freq: float, max_freq: float, scale: float = 1.0):
        super().__init__()
        self.n_features = n_features
        self.min_freq = float(min_freq)
        self.max_freq = float(max_freq)
        self.scale = float(scale)
        self.mlp = nn.Sequential(nn.Linear(n_features, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = sinusoidal_features(x * self.scale, self.n_features, self.min_freq, self.max_freq)
        return self.mlp(feats.to(self.mlp[0].weight.dtype))


def rotary_cos_sin(n_positions: int, head_dim: int, base: float, device: torch.device | None = None,
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosines and sines ``(n_positions, head_dim)`` of RoPE angles ``pos * base^(-2i / head_dim)``."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(n_positions, device=device, dtype=torch.float32).unsqueeze(1) * inv_freq
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(B, H, L, head_dim)`` by position: ``x * cos + rotate_half(x) * sin``."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def time_embedder(width: int, n_features: int) -> ScalarEmbedder:
    """Embedder of the flow time ``s`` in [0, 1] (DiT's ``1000 * t`` features: 0.1 to 1000 rad per unit)."""
    return ScalarEmbedder(width, n_features, min_freq=0.1, max_freq=1000.0)


def duration_embedder(width: int, n_features: int, max_duration_s: float) -> ScalarEmbedder:
    """Embedder of the sound's duration in seconds, as Fourier features of ``seconds / max_duration_s``.

    Frequencies from 0.5 to ``100`` rad per window length resolve about 1 % of the window.
    """
    return ScalarEmbedder(width, n_features, min_freq=0.5, max_freq=100.0, scale=1.0 / max_duration_s)


__all__ = ["sinusoidal_features", "ScalarEmbedder", "rotary_cos_sin", "apply_rotary", "time_embedder",
           "duration_embedder"]
