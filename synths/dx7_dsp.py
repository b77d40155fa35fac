"""Pure tensor functions of the DX7 renderer (:mod:`sds_audio.synths.dx7`): table lookups,
the 4-stage envelopes in closed form, operator phases, and the one-sample feedback recurrence.

Levels are in octaves of amplitude, speeds in octaves per second, times in seconds (the
units of :mod:`sds_audio.synths.dx7_tables`). Every function is differentiable. Two have a
hand-written backward, for speed: the feedback recurrence (:func:`feedback_loop`: one loop
forward, the adjoint recurrence backward, instead of an autograd graph of a few operations
per sample) and the control-to-audio interpolation (:func:`control_to_audio`); both are
checked against finite differences in the tests.
"""

from __future__ import annotations

from typing import Sequence

import torch

from . import dsp
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
    """Inverse of :func:`_attack_time`.

    Band ``k`` (level ``k..k+1``) starts at unit-speed time ``knots[k]`` and rises at
    ``ATTACK_CEILING_OCT - k``; each time is looked up in its own band (one evaluation per
    time, not one per band).
    """
    bands = torch.arange(tab.ATTACK_CEILING_OCT, dtype=time.dtype, device=time.device)
    knots = torch.cat([torch.zeros(1, dtype=time.dtype, device=time.device),
                       torch.cumsum(1.0 / (tab.ATTACK_CEILING_OCT - bands), 0)[:-1]])
    band = torch.searchsorted(knots[1:], time.detach().contiguous(), right=True)
    level = bands[band] + (time - knots[band]) * (tab.ATTACK_CEILING_OCT - bands[band])
    return level.clamp(0, tab.ATTACK_CEILING_OCT)


def _rise_start(start: torch.Tensor) -> torch.Tensor:
    """Unit-speed attack time a rising stage from ``start`` begins at: that of ``max(start, ATTACK_JUMP_OCT)``."""
    return _attack_time(torch.maximum(start, torch.full_like(start, tab.ATTACK_JUMP_OCT)))


def _amp_ramp(start: torch.Tensor, target: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
    """Duration (s) of an amplitude stage from ``start`` to ``target`` at ``speed`` (all ``(...)``)."""
    h0 = _rise_start(start)
    rise_time = torch.relu(_attack_time(target) - h0) / speed
    fall_time = torch.relu(start - target) / speed
    return torch.where(target > start, rise_time, fall_time)


def _amp_level(start: torch.Tensor, target: torch.Tensor, speed: torch.Tensor, h0: torch.Tensor,
               tau: torch.Tensor) -> torch.Tensor:
    """Level of an amplitude stage ``tau`` s after it began (all arguments of one shape).

    Falling: linear in octaves at ``speed`` down to ``target``. Rising: jumps to
    ``ATTACK_JUMP_OCT`` then follows the attack law from unit-speed time ``h0`` (the attack
    time of ``max(start, ATTACK_JUMP_OCT)``) up to ``target``.
    """
    rise_level = torch.minimum(target, _attack_level(h0 + speed * tau))
    fall_level = torch.maximum(target, start - speed * tau)
    return torch.where(target > start, rise_level, fall_level)


def _pitch_ramp(start: torch.Tensor, target: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
    """Duration (s) of a pitch-envelope stage: linear at ``speed`` octaves/s."""
    return (target - start).abs() / speed


def _pitch_level(start: torch.Tensor, target: torch.Tensor, speed: torch.Tensor, h0: torch.Tensor | None,
                 tau: torch.Tensor) -> torch.Tensor:
    """Level of a pitch-envelope stage ``tau`` s after it began: linear toward ``target``."""
    step = speed * tau
    return start + torch.maximum(torch.minimum(target - start, step), -step)


def _stage_levels(table: dict[str, torch.Tensor], stage: torch.Tensor, t: torch.Tensor, level_fn) -> torch.Tensor:
    """Each time's level in its own stage.

    Args:
        table: per envelope and stage ``(..., K)``: ``start``, ``target``, ``speed``, ``h0``
            (None for linear stages) and ``begin`` (s).
        stage: ``(..., n)`` the stage of each time (index into the last axis of ``table``).
        t: ``(n,)`` or ``(..., n)`` times (s).
        level_fn: :func:`_amp_level` or :func:`_pitch_level`.

    Returns:
        ``(..., n)`` levels.
    """
    def at(x: torch.Tensor | None) -> torch.Tensor | None:
        return None if x is None else torch.gather(x, -1, stage)

    tau = torch.relu(t - at(table["begin"]))
    return level_fn(at(table["start"]), at(table["target"]), at(table["speed"]), at(table["h0"]), tau)


def envelope_levels(start: torch.Tensor, targets: torch.Tensor, speeds: torch.Tensor, holds: torch.Tensor,
                    t_s: torch.Tensor, note_off_s: float, pitch: bool = False) -> torch.Tensor:
    """A 4-stage DX7 envelope at times ``t_s``.

    Stages 1-3 run one after the other (each ramp then its hold), then the level sustains
    at L3; from ``note_off_s`` stage 4 runs from wherever the envelope is toward L4. The stage
    of each time is found first (from the stage end times, without gradient) and the level is
    evaluated once per time, in that stage; gradients reach the stage parameters and, through
    the stages' begin times, the earlier stages' ramps.

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
    ramp_fn, level_fn = (_pitch_ramp, _pitch_level) if pitch else (_amp_ramp, _amp_level)
    # stages 1-3 and the sustain (a stage from L3 to L3): start, target, speed, begin
    starts, begins = [start], [torch.zeros_like(start)]
    for k in range(3):
        ramp = ramp_fn(starts[k], targets[..., k], speeds[..., k])
        begins.append(begins[k] + ramp + holds[..., k])
        starts.append(targets[..., k])
    held = {"start": torch.stack(starts, -1), "target": torch.cat([targets[..., :3], targets[..., 2:3]], -1),
            "speed": torch.cat([speeds[..., :3], speeds[..., 2:3]], -1), "begin": torch.stack(begins, -1)}
    held["h0"] = None if pitch else _rise_start(held["start"])
    ends = held["begin"][..., 1:].detach().contiguous()                                     # (..., 3)

    def held_stage(t: torch.Tensor) -> torch.Tensor:
        return torch.searchsorted(ends, t.expand(*ends.shape[:-1], t.shape[-1]).contiguous(), right=True)

    t_off = torch.full((1,), float(note_off_s), dtype=t_s.dtype, device=t_s.device)
    at_off = _stage_levels(held, held_stage(t_off), t_off, level_fn)[..., 0]
    # the table with the release (stage 4 from the level at note-off) appended
    table = {"start": torch.cat([held["start"], at_off[..., None]], -1),
             "target": torch.cat([held["target"], targets[..., 3:]], -1),
             "speed": torch.cat([held["speed"], speeds[..., 3:]], -1),
             "begin": torch.cat([held["begin"], t_off.expand_as(at_off)[..., None]], -1)}
    table["h0"] = None if pitch else torch.cat([held["h0"], _rise_start(at_off)[..., None]], -1)
    with torch.no_grad():
        stage = torch.where(t_s < note_off_s, held_stage(t_s), 4)
    return _stage_levels(table, stage, t_s, level_fn)


class _ControlToAudio(torch.autograd.Function):
    """:func:`~sds_audio.synths.dsp.interpolate_control` (the same ``lerp``, bit for bit), with a
    backward that folds each block's gradient onto its two control points in one matrix product
    ``(..., n_blocks, hop) @ (hop, 2)`` instead of two broadcast products and two reductions."""

    @staticmethod
    def forward(ctx, values: torch.Tensor, hop: int) -> torch.Tensor:
        ctx.hop = hop
        return dsp.interpolate_control(values, hop)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        hop = ctx.hop
        w = torch.arange(hop, dtype=grad.dtype, device=grad.device) / hop
        parts = grad.unflatten(-1, (-1, hop)) @ torch.stack([1 - w, w], -1)                 # (..., nb, 2)
        out = grad.new_zeros(*grad.shape[:-1], parts.shape[-2] + 1)
        out[..., :-1] += parts[..., 0]
        out[..., 1:] += parts[..., 1]
        return out, None


def control_to_audio(values: torch.Tensor, hop: int) -> torch.Tensor:
    """Control points ``(..., n_blocks + 1)`` -> audio rate ``(..., n_blocks * hop)`` by linear
    interpolation (:func:`~sds_audio.synths.dsp.interpolate_control`, with a cheaper backward)."""
    if hop == 1:
        return values[..., :-1]
    return _ControlToAudio.apply(values, int(hop))


def operator_phases(freq_hz: torch.Tensor, start_s: torch.Tensor, within_s: torch.Tensor) -> torch.Tensor:
    """Phases (rad) of several oscillators at once: :func:`~sds_audio.synths.dsp.oscillator_phase`
    broadcast over operators (the same arithmetic, one tensor operation for all of them).

    Args:
        freq_hz: ``(B, K)`` frequencies.
        start_s: float64 block-start times broadcastable to ``(B, K, n_blocks)``.
        within_s: in-block times broadcastable to ``(B, K, n_blocks, hop)``.

    Returns:
        ``(B, K, n_blocks * hop)`` phases, wrapped once per block.
    """
    base = torch.frac(freq_hz.double()[..., None] * start_s).to(freq_hz.dtype)
    return torch.addcmul((dsp.TWO_PI * base)[..., None], within_s, (dsp.TWO_PI * freq_hz)[..., None, None]).flatten(-2)


def _window_parts(segment: int, warmup: int) -> list[tuple[int, int, int]]:
    """How a window of ``warmup + segment`` samples lies on the segments: per part ``(back, lo, hi)``,
    window positions ``lo:hi`` hold the end of the segment ``back`` segments before the window's
    own (``back = 0``: the window's own segment, its last ``segment`` positions)."""
    parts = [(0, warmup, warmup + segment)]
    back, hi = 1, warmup
    while hi > 0:
        parts.append((back, max(0, hi - segment), hi))
        back, hi = back + 1, hi - segment
    return parts


def _windows(x: torch.Tensor, segment: int, warmup: int) -> torch.Tensor:
    """``x`` ``(M, B, T)`` cut into overlapping windows, step-major ``(M, warmup + segment, S, B)``.

    Window ``s`` holds samples ``s * segment - warmup`` .. ``(s + 1) * segment - 1`` (zeros
    before the start and after the end); ``S = ceil(T / segment)``.
    """
    n_ops, batch, n = x.shape
    n_seg = -(-n // segment)
    blocks = torch.nn.functional.pad(x, (0, n_seg * segment - n)).view(n_ops, batch, n_seg, segment)
    out = x.new_empty(n_ops, warmup + segment, n_seg, batch)
    view = out.permute(0, 3, 2, 1)                                                    # (M, B, S, L)
    for back, lo, hi in _window_parts(segment, warmup):
        view[:, :, back:, lo:hi] = blocks[:, :, :n_seg - back, segment - (hi - lo):]
        view[:, :, :back, lo:hi] = 0                                                    # before the start
    return out


def _overlap_add(windows: torch.Tensor, n: int, segment: int, warmup: int) -> torch.Tensor:
    """Adjoint of :func:`_windows`: ``(M, L, S, B)`` -> ``(M, B, n)``, overlapping samples summed."""
    n_ops, _, n_seg, batch = windows.shape
    view = windows.permute(0, 3, 2, 1)                                                  # (M, B, S, L)
    parts = _window_parts(segment, warmup)
    blocks = view[..., warmup:].contiguous()                                            # the windows' own segments
    for back, lo, hi in parts[1:]:
        blocks[:, :, :n_seg - back, segment - (hi - lo):] += view[:, :, back:, lo:hi]
    return blocks.view(n_ops, batch, n_seg * segment)[..., :n]


class _FeedbackRecurrence(torch.autograd.Function):
    """The recurrence of :func:`feedback_loop` on stacked chains, with its adjoint as the backward.

    Forward (no autograd graph): ``phase, gain`` ``(M, B, T)`` (chain operator, batch, sample),
    ``half_gain`` ``(B,)`` (half the feedback gain, rad per unit output), ``segment, warmup``
    (samples) -> ``y`` ``(M, B, T)``. The signals are cut into windows (:func:`_windows`) run
    side by side as the ``S * B`` lanes of one loop over the ``L = warmup + segment`` steps,
    each lane starting from silence; each window's last ``segment`` outputs are kept.

    Backward: the adjoint recurrence in one reverse pass. With ``a_m`` the total gradient of
    ``y_m[j]`` and ``c_m = g_m cos(arg_m)``, the chain gives ``d arg_m = a_m c_m`` and
    ``a_{m-1} = grad_{m-1} + MODULATION_RAD d arg_m`` within a step; across steps the last
    output feeds ``arg_0`` one and two steps later, so the first operator's
    ``r[j] = d arg_0[j]`` obeys the linear recurrence ``r[j] = q[j] + p[j] (r[j+1] + r[j+2])``
    with ``p, q`` computed for every step at once. Only that two-op recurrence runs step by
    step; every other gradient follows from ``r`` in whole-tensor operations, and the windows'
    gradients are summed back onto the samples (:func:`_overlap_add`).
    """

    @staticmethod
    def forward(ctx, phase: torch.Tensor, gain: torch.Tensor, half_gain: torch.Tensor, segment: int,
                warmup: int) -> torch.Tensor:
        n_ops, batch, n = phase.shape
        windows = _windows(torch.cat([phase, gain]), segment, warmup)                  # (2M, L, S, B)
        win_phase, win_gain = windows[:n_ops], windows[n_ops:]
        n_steps = windows.shape[1]
        arg = torch.empty_like(win_phase)
        y = torch.empty_like(win_phase)
        zero = phase.new_zeros(windows.shape[2:])
        s = torch.empty_like(zero)
        half = half_gain.expand_as(zero).contiguous()
        # per-step views, made once (indexing in the loop costs as much as the arithmetic)
        ph, g, a, out = ([list(x[m].unbind(0)) for m in range(n_ops)] for x in (win_phase, win_gain, arg, y))
        prev2, prev1 = zero, zero                           # the chain's last output one and two steps back
        for j in range(n_steps):
            torch.add(prev1, prev2, out=s)
            torch.addcmul(ph[0][j], s, half, out=a[0][j])
            torch.sin(a[0][j], out=out[0][j]).mul_(g[0][j])
            for m in range(1, n_ops):
                torch.add(ph[m][j], out[m - 1][j], alpha=tab.MODULATION_RAD, out=a[m][j])
                torch.sin(a[m][j], out=out[m][j]).mul_(g[m][j])
            prev2, prev1 = prev1, out[-1][j]
        ctx.save_for_backward(win_gain, half_gain, arg, y)
        ctx.sizes = (n, segment, warmup)
        n_seg = windows.shape[2]
        return y[:, warmup:].permute(0, 3, 2, 1).reshape(n_ops, batch, n_seg * segment)[..., :n]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        gain, half_gain, arg, y = ctx.saved_tensors
        n, segment, warmup = ctx.sizes
        n_ops, n_steps, n_seg, batch = arg.shape
        # the outputs' gradients in window layout (the warm-up outputs are not outputs: 0)
        grad_y = arg.new_zeros(arg.shape)
        kept = torch.nn.functional.pad(grad_out, (0, n_seg * segment - n)).view(n_ops, batch, n_seg, segment)
        grad_y[:, warmup:] = kept.permute(0, 3, 2, 1)
        gcos = gain * torch.cos(arg)                                                    # (M, L, S, B)
        # d arg_0 = q + p * (gradient of the loop's input), the chain within a step folded in
        q = grad_y[-1]
        p = half_gain.expand_as(q)
        for m in range(n_ops - 1, 0, -1):
            q = grad_y[m - 1] + tab.MODULATION_RAD * (q * gcos[m])
            p = p * gcos[m] * tab.MODULATION_RAD
        q = (q * gcos[0]).contiguous()
        p = (p * gcos[0]).contiguous()
        # the windows' argument and gain gradients, in one buffer; r = d arg_0 (two zero steps past the end)
        grads = arg.new_empty(2 * n_ops, n_steps + 2, n_seg, batch)
        grad_arg, grad_gain = grads[:n_ops], grads[n_ops:]
        r = grad_arg[0]
        r[n_steps:] = 0
        s = torch.empty_like(r[0])
        rs, qs, ps = list(r.unbind(0)), list(q.unbind(0)), list(p.unbind(0))
        for j in range(n_steps - 1, -1, -1):
            torch.add(rs[j + 1], rs[j + 2], out=s)
            torch.addcmul(qs[j], ps[j], s, out=rs[j])
        fed = r[1:n_steps + 1] + r[2:n_steps + 2]            # gradient of each step's loop input
        grad_half = (y[-1] * fed).sum(dim=(0, 1))
        # the other operators' argument gradients and every gain gradient, from r
        a = grad_y[-1] + half_gain * fed
        for m in range(n_ops - 1, -1, -1):
            if m:
                torch.mul(a, gcos[m], out=grad_arg[m, :n_steps])
            torch.mul(a, torch.sin(arg[m]), out=grad_gain[m, :n_steps])
            if m:
                a = grad_y[m - 1] + tab.MODULATION_RAD * grad_arg[m, :n_steps]
        grads = _overlap_add(grads[:, :n_steps], n, segment, warmup)
        return grads[:n_ops], grads[n_ops:], grad_half, None, None


def feedback_loop(phases: Sequence[torch.Tensor], gains: Sequence[torch.Tensor], gain_fb: torch.Tensor,
                  segment: int = FEEDBACK_SEGMENT, warmup: int = FEEDBACK_WARMUP) -> list[torch.Tensor]:
    """Outputs of a chain of operators whose last output feeds the first one's phase.

    Per sample ``n``: ``y0[n] = g0[n] sin(phi0[n] + gain_fb * (s[n-1] + s[n-2]) / 2)``, then each
    next operator ``y_m[n] = g_m[n] sin(phi_m[n] + 4 pi y_{m-1}[n])``; ``s`` is the chain's last
    output. The recurrence runs over segments of ``segment`` samples side by side, each started
    ``warmup`` samples early from ``s = 0`` (see the module docstring). Forward and backward
    are one loop each (:class:`_FeedbackRecurrence`), not an autograd graph per sample.

    Args:
        phases, gains: per chain operator ``(B, T)`` phase (rad, without the loop's input) and gain.
        gain_fb: ``(B,)`` feedback gain (rad per unit output).

    Returns:
        per chain operator ``(B, T)`` output.
    """
    y = _FeedbackRecurrence.apply(torch.stack(list(phases)), torch.stack(list(gains)), 0.5 * gain_fb,
                                  int(segment), int(warmup))
    return list(y.unbind(0))
