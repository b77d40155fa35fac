"""Windows of a long mixture and the crossfades that join the windows' sources (pure functions).

:func:`~sds_audio.tasks.separate.separate` cuts a mixture longer than its window into the evenly
spaced, overlapping windows of :func:`plan_windows`, separates each, and joins the windows' sources
with :func:`overlap_add` and the weights of :func:`crossfade_weights`, which sum to one at every
sample, so the crossfaded mixture windows add up to the mixture exactly.
"""

from __future__ import annotations

from typing import Sequence

import torch


def plan_windows(n_samples: int, window: int, overlap: int) -> list[tuple[int, int]]:
    """Evenly spaced windows ``(start, length)`` covering ``n_samples``, consecutive ones overlapping >= ``overlap``.

    One window of length ``n_samples`` when it fits in ``window``; otherwise
    ``1 + ceil((n_samples - window) / (window - overlap))`` windows of length ``window``,
    the first starting at 0 and the last ending at ``n_samples``.
    """
    n_samples, window, overlap = int(n_samples), int(window), int(overlap)
    if n_samples < 1 or window < 1 or not 0 <= overlap < window:
        raise ValueError(f"bad window plan: n_samples={n_samples}, window={window}, overlap={overlap}")
    if n_samples <= window:
        return [(0, n_samples)]
    count = 1 + -(-(n_samples - window) // (window - overlap))
    span = n_samples - window
    return [(round(i * span / (count - 1)), window) for i in range(count)]


def crossfade_weights(windows: Sequence[tuple[int, int]], n_samples: int,
                      edge_fraction: float = 0.0) -> list[torch.Tensor]:
    """Crossfade weights, one ``(length,)`` float64 tensor per window, summing to one at every sample.

    Where two consecutive windows overlap by ``ov`` samples, the outer ``edge_fraction * ov`` samples
    at either end of the overlap go wholly to the window that does not end there (the other weighs
    0), and across the rest the earlier window ramps linearly down and the later one up (sample
    centres, so with ``edge_fraction = 0`` no weight inside an overlap is exactly 0 or 1). Outside
    overlaps a window weighs 1. The ramps are then normalised by their overlap-added sum, so
    ``sum_i w_i(t) = 1`` exactly even if three windows ever met.

    Args:
        windows: ``(start, length)`` of each window, in order (:func:`plan_windows`).
        n_samples: length of the whole signal.
        edge_fraction: in ``[0, 0.5)``; 0 is a linear crossfade over the whole overlap.
    """
    if not 0.0 <= float(edge_fraction) < 0.5:
        raise ValueError(f"edge_fraction must be in [0, 0.5), got {edge_fraction}")

    def ramp(pos: torch.Tensor, ov: int) -> torch.Tensor:
        """0 -> 1 across the middle of an overlap of ``ov`` samples, ``pos`` counted from its start."""
        edge = float(edge_fraction) * ov
        return ((pos - edge) / (ov - 2.0 * edge)).clamp(0.0, 1.0)

    ramps = []
    for i, (start, length) in enumerate(windows):
        pos = torch.arange(length, dtype=torch.float64) + 0.5
        a = torch.ones(length, dtype=torch.float64)
        if i > 0:
            prev_start, prev_len = windows[i - 1]
            ov = prev_start + prev_len - start
            if ov > 0:
                a = torch.minimum(a, ramp(pos, ov))
        if i + 1 < len(windows):
            ov = start + length - windows[i + 1][0]
            if ov > 0:
                a = torch.minimum(a, ramp(length - pos, ov))
        ramps.append(a)
    total = torch.zeros(int(n_samples), dtype=torch.float64)
    for (start, length), a in zip(windows, ramps):
        total[start:start + length] += a
    if not bool((total > 0).all()):
        raise ValueError("the windows do not cover every sample")
    return [a / total[start:start + length] for (start, length), a in zip(windows, ramps)]


def overlap_add(chunks: Sequence[torch.Tensor], windows: Sequence[tuple[int, int]], weights: Sequence[torch.Tensor],
                n_samples: int) -> torch.Tensor:
    """``sum_i w_i * chunk_i`` placed at each window's start; chunks ``(..., length_i)`` -> ``(..., n_samples)``."""
    out = chunks[0].new_zeros(*chunks[0].shape[:-1], int(n_samples))
    for chunk, (start, length), w in zip(chunks, windows, weights):
        out[..., start:start + length] += chunk * w.to(chunk.dtype).to(chunk.device)
    return out
