"""Pure tensor functions of the DX7 renderer (:mod:`sds_audio.synths.dx7`): table lookups,
the 4-stage envelopes in closed form, and the one-sample feedback recurrence.

Levels are in octaves of amplitude, speeds in octaves per second, times in seconds (the
units of :mod:`sds_audio.synths.dx7_tables`). Every function is differentiable.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import dx7_tables as tab

#: samples per segment of the feedback recurrence, and warm-up samples each segment starts early
FEEDBACK_SEGMENT = 128
FEEDBACK_WARMUP = 128


def interp(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Linear interpolation of a table indexed 0..len-1 at continuous ``x`` (exact at integers)."""
    top = table.shape[0] - 1
    x = x.clamp(0, top)
    i0 = torch.floor(x.detach()).clamp(max=top - 1).long()
    w = x - i0.to(x.dtype)
    return torch.lerp(table[i0], table[i0 + 1], w)


def smoothed(table: torch.Tensor) -> torch.Tensor:
    """3-tap moving average along the last axis (ends repeated): strictly increasing for a
    non-decreasing table that rises at least every second entry."""
    padded = torch.cat([table[..., :1], table, table[..., -1:]], dim=-1)
    return (padded[..., :-2] + padded[..., 1:-1] + padded[..., 2:]) / 3


def lookup(table: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """:func:`interp` in value, with the gradient of the smoothed table's interpolation.

    Several DX7 tables repeat entries (two EG levels share a value, several rates share a
    speed); interpolating them exactly leaves flat stretches where the optimiser gets no
    gradient. The value stays exact at the integers; the gradient comes from the 3-tap average.
    """
    smooth = interp(smoothed(table), x)
    return interp(table, x).detach() + smooth - smooth.detach()


# -- envelope pieces (pure functions of tensors; levels in octaves, speeds in octaves/s) --------
def _attack_time(level: torch.Tensor) -> torch.Tensor:
    """Unit-speed time to rise from 0 to ``level`` under the attack law (piecewise linear)."""
    bands = torch.arange(tab.ATTACK_CEILING_OCT, dtype=level.dtype, device=level.device)
    pieces = (level[..., None] - bands).clamp(0, 1) / (tab.ATTACK_CEILING_OCT - bands)
    return pieces.sum(-1)


def _attack_level(time: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`_attack_time`."""
    bands = torch.arange(tab.ATTACK_CEILING_OCT, dtype=time.dtype, device=time.device)
    knots = torch.cat([torch.zeros(1, dtype=time.dtype, device=time.device),
                       torch.cumsum(1.0 / (tab.ATTACK_CEILING_OCT - bands), 0)[:-1]])
    return ((time[..., None] - knots) * (tab.ATTACK_CEILING_OCT - bands)).clamp(0, 1).sum(-1)


def _segment(start: torch.Tensor, target: torch.Tensor, speed: torch.Tensor,
             tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One envelope stage from ``start`` toward ``target``: ``(level at tau, ramp duration)``.

    ``start, target, speed``: ``(...)``; ``tau``: ``(..., n)`` local times (s, >= 0).
    """
    rising = target > start
    jumped = torch.maximum(start, torch.full_like(start, tab.ATTACK_JUMP_OCT))
    h0 = _attack_time(jumped)
    rise_level = torch.minimum(target[..., None], _attack_level(h0[..., None] + speed[..., None] * tau))
    rise_time = torch.relu(_attack_time(target) - h0) / speed
    fall_level = torch.maximum(target[..., None], start[..., None] - speed[..., None] * tau)
    fall_time = torch.relu(start - target) / speed
    return (torch.where(rising[..., None], rise_level, fall_level), torch.where(rising, rise_time, fall_time))


def _stages(start: torch.Tensor, targets: torch.Tensor, speeds: torch.Tensor, holds: torch.Tensor,
            t: torch.Tensor, segment) -> torch.Tensor:
    """Stages 1-3 then sustain: level at times ``t`` (``(...,)`` per envelope, ``t`` ``(n,)`` or ``(..., n)``)."""
    level = targets[..., 2, None].expand(*targets.shape[:-1], t.shape[-1])
    begin = torch.zeros_like(start)
    prev = start
    curves, begins = [], []
    for k in range(3):
        tau = torch.relu(t - begin[..., None])
        curve, ramp = segment(prev, targets[..., k], speeds[..., k], tau)
        curves.append(curve)
        begins.append(begin)
        begin = begin + ramp + holds[..., k]
        prev = targets[..., k]
    ends = begins[1:] + [begin]
    for k in reversed(range(3)):
        level = torch.where(t < ends[k][..., None], curves[k], level)
    return level


def _pitch_segment(start: torch.Tensor, target: torch.Tensor, speed: torch.Tensor,
                   tau: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A pitch-envelope stage: linear at ``speed`` octaves/s toward ``target``."""
    step = speed[..., None] * tau
    delta = (target - start)[..., None]
    return start[..., None] + torch.maximum(torch.minimum(delta, step), -step), (target - start).abs() / speed


def envelope_levels(start: torch.Tensor, targets: torch.Tensor, speeds: torch.Tensor, holds: torch.Tensor,
                    t_s: torch.Tensor, note_off_s: float, pitch: bool = False) -> torch.Tensor:
    """A 4-stage DX7 envelope at times ``t_s``.

    Args:
        start: ``(...)`` level before stage 1 (octaves).
        targets: ``(..., 4)`` stage levels L1..L4 (octaves).
        speeds: ``(..., 4)`` stage speeds (octaves per second).
        holds: ``(..., 3)`` extra time of stages 1-3 (the static holds), seconds.
        t_s: ``(n,)`` times in seconds.
        note_off_s: key release time; stage 4 starts there from wherever the envelope is.
        pitch: linear stages (the pitch envelope) instead of the amplitude law.

    Returns:
        ``(..., n)`` levels in octaves.
    """
    segment = _pitch_segment if pitch else _segment
    held = _stages(start, targets, speeds, holds, t_s, segment)
    t_off = torch.full((1,), float(note_off_s), dtype=t_s.dtype, device=t_s.device)
    at_off = _stages(start, targets, speeds, holds, t_off, segment)[..., 0]
    released, _ = segment(at_off, targets[..., 3], speeds[..., 3], torch.relu(t_s - note_off_s))
    return torch.where(t_s < note_off_s, held, released)


def feedback_loop(phases: Sequence[torch.Tensor], gains: Sequence[torch.Tensor], gain_fb: torch.Tensor,
                  segment: int = FEEDBACK_SEGMENT, warmup: int = FEEDBACK_WARMUP) -> list[torch.Tensor]:
    """Outputs of a chain of operators whose last output feeds the first one's phase.

    Per sample ``n``: ``y0[n] = g0[n] sin(phi0[n] + gain_fb * (s[n-1] + s[n-2]) / 2)``, then each
    next operator ``y_m[n] = g_m[n] sin(phi_m[n] + 4 pi y_{m-1}[n])``; ``s`` is the chain's last
    output. The recurrence runs over segments of ``segment`` samples side by side, each started
    ``warmup`` samples early from ``s = 0`` (see the module docstring).

    Args:
        phases, gains: per chain operator ``(B, T)`` phase (rad, without the loop's input) and gain.
        gain_fb: ``(B,)`` feedback gain (rad per unit output).

    Returns:
        per chain operator ``(B, T)`` output.
    """
    batch, n = phases[0].shape
    n_seg = -(-n // segment)
    total = warmup + n_seg * segment
    index = (torch.arange(n_seg, device=phases[0].device)[:, None] * segment
             + torch.arange(segment + warmup, device=phases[0].device)[None, :])             # (S, L)

    def cut(x: torch.Tensor) -> torch.Tensor:
        padded = torch.nn.functional.pad(x, (warmup, total - warmup - n))
        return padded[:, index]                                                            # (B, S, L)

    ph = [cut(p) for p in phases]
    gs = [cut(g) for g in gains]
    half = (0.5 * gain_fb)[:, None]
    zero = torch.zeros(batch, n_seg, dtype=ph[0].dtype, device=ph[0].device)
    h1, h2 = zero, zero
    outs: list[list[torch.Tensor]] = [[] for _ in phases]
    for j in range(segment + warmup):
        y = gs[0][..., j] * torch.sin(ph[0][..., j] + half * (h1 + h2))
        outs[0].append(y)
        for m in range(1, len(ph)):
            y = gs[m][..., j] * torch.sin(ph[m][..., j] + tab.MODULATION_RAD * y)
            outs[m].append(y)
        h2, h1 = h1, y
    return [torch.stack(o[warmup:], dim=-1).reshape(batch, n_seg * segment)[:, :n] for o in outs]
