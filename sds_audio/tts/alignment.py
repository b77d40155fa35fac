"""Monotonic alignment of text symbols to latent frames, durations, and the masks built from them.

Pure functions (no parameters):

- :func:`sequence_mask`: lengths -> ``(B, L)`` bool validity masks;
- :func:`gaussian_log_likelihood`: ``log N(z_t; mu_n, I)`` for every symbol / frame pair;
- :func:`monotonic_alignment`: the monotonic alignment search of Glow-TTS
  (Kim et al. 2020), the Viterbi path through that matrix in which every frame
  belongs to exactly one symbol, symbols keep their order and every symbol gets
  at least one frame. It runs in NumPy (no gradient flows through it), one loop
  over frames vectorised over the batch and the symbols;
- :func:`durations_from_path`, :func:`path_from_durations`: between a hard
  alignment and per-symbol frame counts;
- :func:`expand`: symbol-rate features -> frame-rate features along a path;
- :func:`predicted_durations`: a duration model's log output -> integer frame counts.
"""

from __future__ import annotations

import math

import numpy as np
import torch


def sequence_mask(lengths: torch.Tensor, max_length: int | None = None) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_length)`` bool, True on the first ``lengths[b]`` positions."""
    max_length = int(lengths.max()) if max_length is None else int(max_length)
    return torch.arange(max_length, device=lengths.device)[None, :] < lengths[:, None]


def gaussian_log_likelihood(z: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Log density of each frame under each symbol's unit-variance Gaussian.

    Args:
        z: ``(B, D, T)`` frames.
        mu: ``(B, D, N)`` symbol means.

    Returns:
        ``(B, N, T)``: ``-0.5 * ||z_t - mu_n||^2 - D/2 * log(2 pi)``.
    """
    d = z.shape[1]
    zz = (z * z).sum(1)                     # (B, T)
    mm = (mu * mu).sum(1)                   # (B, N)
    cross = torch.einsum("bdn,bdt->bnt", mu, z)
    return -0.5 * (mm[:, :, None] - 2.0 * cross + zz[:, None, :]) - 0.5 * d * math.log(2.0 * math.pi)


def monotonic_alignment(log_p: torch.Tensor, text_lengths: torch.Tensor, frame_lengths: torch.Tensor) -> torch.Tensor:
    """Most likely monotonic hard alignment (Viterbi) of symbols to frames.

    Args:
        log_p: ``(B, N, T)`` score of frame ``t`` under symbol ``n``.
        text_lengths: ``(B,)`` valid symbols per row (``>= 1``).
        frame_lengths: ``(B,)`` valid frames per row (``>= text_lengths``; a row with fewer frames
            than symbols gets the diagonal path, cut short).

    Returns:
        ``(B, N, T)`` float 0/1 path: each valid frame has exactly one symbol,
        symbol indices never decrease along ``t``, the first frame belongs to
        symbol 0 and the last valid frame to the last valid symbol.
    """
    scores = log_p.detach().float().cpu().numpy().astype(np.float64)
    n_text = text_lengths.cpu().numpy().astype(np.int64)
    n_frames = frame_lengths.cpu().numpy().astype(np.int64)
    b, n, t = scores.shape
    neg = -1e30
    sym = np.arange(n)[None, :]
    valid_sym = sym < n_text[:, None]
    value = np.full((b, n), neg)
    value[:, 0] = scores[:, 0, 0]
    moved = np.zeros((b, n, t), dtype=bool)       # moved[b, n, t]: reached (n, t) from (n - 1, t - 1)
    for j in range(1, t):
        stay = value
        step = np.concatenate([np.full((b, 1), neg), value[:, :-1]], axis=1)
        take_step = step > stay
        value = np.where(take_step, step, stay) + scores[:, :, j]
        # symbol n cannot be reached before frame n, nor can it leave room for fewer frames than symbols left
        reachable = (sym <= j) & valid_sym
        value = np.where(reachable, value, neg)
        moved[:, :, j] = take_step
    path = np.zeros((b, n, t), dtype=np.float32)
    for i in range(b):
        frames, symbols = int(n_frames[i]), int(n_text[i])
        if frames < symbols:
            for j in range(frames):
                path[i, j, j] = 1.0
            continue
        k = symbols - 1
        for j in range(frames - 1, -1, -1):
            path[i, k, j] = 1.0
            if j > 0 and k > 0 and (moved[i, k, j] or k == j):
                k -= 1
    return torch.from_numpy(path).to(log_p.device)


def durations_from_path(path: torch.Tensor) -> torch.Tensor:
    """``(B, N, T)`` hard path -> ``(B, N)`` frames per symbol (float)."""
    return path.sum(-1)


def path_from_durations(durations: torch.Tensor, n_frames: int | None = None) -> torch.Tensor:
    """``(B, N)`` integer frame counts -> ``(B, N, T)`` 0/1 path (symbol ``n`` covers its run of frames).

    ``n_frames`` defaults to the longest row's total; rows whose total is shorter leave the tail empty,
    longer ones are cut.
    """
    durations = durations.long().clamp_min(0)
    ends = durations.cumsum(-1)
    starts = ends - durations
    total = int(ends[:, -1].max()) if n_frames is None else int(n_frames)
    frames = torch.arange(total, device=durations.device)[None, None, :]
    return ((frames >= starts[..., None]) & (frames < ends[..., None])).float()


def expand(features: torch.Tensor, path: torch.Tensor) -> torch.Tensor:
    """Symbol features ``(B, D, N)`` -> frame features ``(B, D, T)`` along ``path`` ``(B, N, T)``."""
    return torch.bmm(features, path.to(features.dtype))


def predicted_durations(log_durations: torch.Tensor, text_mask: torch.Tensor, speed: float = 1.0) -> torch.Tensor:
    """A duration model's ``log(1 + frames)`` output -> integer frames (``>= 1`` on valid symbols, 0 on padding).

    Args:
        log_durations: ``(B, N)`` predicted ``log(1 + frames)``.
        text_mask: ``(B, N)`` valid symbols.
        speed: speaking-rate factor: 2 halves every duration.
    """
    frames = torch.round((torch.exp(log_durations) - 1.0).clamp_min(0.0) / speed)
    return torch.where(text_mask, frames.clamp_min(1.0), torch.zeros_like(frames)).long()


__all__ = ["durations_from_path", "expand", "gaussian_log_likelihood", "monotonic_alignment", "path_from_durations",
           "predicted_durations", "sequence_mask"]
