"""FMSynth: a differentiable N-operator FM (phase-modulation) synthesiser.

Signal flow for one candidate (operators ``k = 0 .. N-1``)::

    y_k(t)   = env_k(t) * sin(psi_k(t))
    psi_k    = phi_k(t) + sum_{j > k} mod_index[j, k] * y_j(t) + feedback_k * env_k(t) * sin(psi_k)
    phi_k(t) = 2 pi * integral of f_k(t) dt,   f_k(t) = f0_hz * ratio_k * p(t)   (tracked operator)
                                               f_k(t) = fixed_hz_k                  (fixed-frequency operator)
    p(t)     = 2 ** (pitch_env_semitones * 10 ** (-3 t / pitch_decay_s) / 12)    (shared pitch sweep)
    out_c(t) = sum_k level_k * pan_c(k) * y_k(t) / max(1, sum_k level_k)

* **Modulation matrix.** ``mod_index[j, k]`` (radians) is how strongly operator
  ``j`` modulates operator ``k``. Only ``j > k`` is used (higher operators modulate
  lower ones), so every patch is acyclic and the operators are computed from the
  top down; the other entries are multiplied by a constant mask buffer and are
  exactly 0 in :meth:`FMSynth.controls` (and so in presets). Every operator also
  goes to the output with its ``level``: "carriers" are the operators with a
  non-zero level.
* **Self-feedback** is instantaneous: ``psi = phi + beta sin(psi)`` with
  ``beta = feedback_k * env_k(t) <= 0.95`` is Kepler's equation, solved per
  sample by vectorised Halley iterations plus one differentiable Newton step whose
  gradient is the exact implicit one (see :func:`~sds_audio.synths.dsp.kepler_solve`);
  there is no loop over samples. ``feedback=False`` drops the parameter and the solve.
* **Envelopes** (per operator) are attack / decay(T60) / sustain, in seconds, with no
  note-off, so a patch renders at any length; with ``pitch_env_semitones`` and a
  short ``pitch_decay_s`` the shared pitch sweep makes a kick-drum "thump".
  Envelopes and the sweep are evaluated on a ~2.76 kHz control grid and linearly
  interpolated (:mod:`~sds_audio.synths.dsp`).
* **Phase accuracy.** The phase is the exact integral of the (piecewise-linear)
  frequency curve, accumulated per control block in float64 and wrapped before
  the cast, so long high notes stay in tune in float32.
* **Aliasing.** Each operator's envelope is multiplied, on the control grid, by
  :func:`~sds_audio.synths.dsp.nyquist_gain` of its instantaneous frequency
  (``f0 * ratio * p(t)``), so an operator, or the part of a pitch sweep, above
  ~0.48 sr fades out smoothly instead of folding back (FM sidebands are not
  band-limited).
* **Tiny envelopes** (< 1e-20 at a control point, e.g. a muted operator) are
  flushed to exactly 0, so silent stretches never hold subnormal floats (slow,
  and NaN gradients through an STFT magnitude).
* **Normalisation.** Operators are panned across the field by a constant-power law
  with unit centre gain (operator 0 in the centre, the others alternately left and
  right, spread by ``stereo_spread``); the mix is divided by ``max(1, sum of
  levels)``. Each operator lies in [-1, 1], so the output lies in [-1, 1] when
  ``stereo_spread = 0`` and within +-sqrt(2) otherwise; the default patch (one
  centred carrier at level 1) peaks at 1.

The default patch: operator 0 is a carrier at ratio 1 and level 1, modulated by
operator 1 (ratio 2, index 1.5 rad), 5 ms attack, 1.5 s decay to 0.25 sustain,
at 220 Hz. To play a preset at another pitch, change ``f0_hz``; fixed-frequency
operators and all times stay put.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from ..errors import SDSAudioError

from . import dsp
from .base import Synth
from .params import ParamSpec

MAX_OPERATORS = 8
# batch x samples per time chunk of the operator chain: renders larger than this run in
# checkpointed chunks so autograd memory stays bounded (smaller chunks measured slower on CPU)
_CHUNK_ELEMENTS = 2 ** 22


def _pan_positions(n_operators: int) -> torch.Tensor:
    """Operator pan positions in [-1, 1] at full spread: 0, -1/m, +1/m, -2/m, ... (m = ceil((N-1)/2))."""
    m = max(1, math.ceil((n_operators - 1) / 2))
    pos = [0.0] + [(-1.0 if k % 2 else 1.0) * math.ceil(k / 2) / m for k in range(1, n_operators)]
    return torch.tensor(pos)


class FMSynth(Synth):
    """Differentiable FM synthesiser with ``n_operators`` sine operators.

    Args:
        n_operators: 1 to 8 operators.
        sample_rate: output rate in Hz.
        channels: 1 (mono) or 2 (stereo).
        batch_size: candidate patches rendered at once.
        feedback: give every operator instantaneous self-feedback (``feedback`` parameter).
        fixed_frequency: per operator, True to ignore ``f0_hz`` and the pitch sweep
            and play at ``fixed_hz`` (the ``fixed_hz`` parameter exists only when
            at least one operator is fixed).

    Parameters (``name``: unit, range, scale; per-operator ones have shape ``(N,)``):
        ``f0_hz`` Hz [20, 4000] log; ``ratio`` [0.125, 16] log; ``fixed_hz`` Hz [20, 20000] log;
        ``mod_index`` rad [0, 8] linear ``(N, N)``; ``feedback`` [0, 0.95];
        ``level`` [0, 1]; ``attack_s`` [0.001, 2] log; ``decay_s`` (T60) [0.01, 20] log;
        ``sustain`` [0, 1]; ``pitch_env_semitones`` [0, 48]; ``pitch_decay_s`` (T60)
        [0.005, 2] log; ``stereo_spread`` [0, 1] (stereo only).
    """

    synth_type = "fm"

    def __init__(self, n_operators: int = 4, sample_rate: int = 44100, channels: int = 2, batch_size: int = 1,
                 feedback: bool = True, fixed_frequency: Sequence[bool] | None = None):
        if isinstance(n_operators, bool) or not isinstance(n_operators, int) or not 1 <= n_operators <= MAX_OPERATORS:
            raise SDSAudioError(f"n_operators must be an integer from 1 to {MAX_OPERATORS}, got {n_operators!r}")
        if fixed_frequency is None:
            fixed_frequency = [False] * n_operators
        fixed_frequency = list(fixed_frequency)
        if len(fixed_frequency) != n_operators or not all(isinstance(f, bool) for f in fixed_frequency):
            raise SDSAudioError(f"fixed_frequency must be a list of {n_operators} booleans (one per operator), "
                                f"got {fixed_frequency!r}")
        if not isinstance(feedback, bool):
            raise SDSAudioError(f"feedback must be true or false, got {feedback!r}")
        n = n_operators
        op = (n,)
        specs = [
            ParamSpec("f0_hz", "Hz", 20.0, 4000.0, 220.0, "log", "fundamental frequency the tracked operators follow"),
            ParamSpec("ratio", "ratio", 0.125, 16.0, 1.0, "log", "operator frequency as a multiple of f0_hz", op),
        ]
        if any(fixed_frequency):
            specs.append(ParamSpec("fixed_hz", "Hz", 20.0, 20000.0, 440.0, "log",
                                   "frequency of fixed-frequency operators (unused by tracked ones)", op))
        specs.append(ParamSpec("mod_index", "rad", 0.0, 8.0, 0.0, "linear",
                               "peak phase deviation operator j (row) applies to operator k (column); only j > k used",
                               (n, n)))
        if feedback:
            specs.append(ParamSpec("feedback", "", 0.0, 0.95, 0.0, "linear",
                                   "instantaneous self-feedback amount (Kepler eccentricity)", op))
        specs += [
            ParamSpec("level", "", 0.0, 1.0, 0.0, "linear", "operator output level in the mix", op),
            ParamSpec("attack_s", "s", 0.001, 2.0, 0.005, "log", "linear rise time of the operator envelope", op),
            ParamSpec("decay_s", "s", 0.01, 20.0, 1.5, "log", "T60 of the fall from peak toward sustain", op),
            ParamSpec("sustain", "", 0.0, 1.0, 0.25, "linear", "envelope level held after the decay", op),
            ParamSpec("pitch_env_semitones", "semitones", 0.0, 48.0, 0.0, "linear",
                      "start offset of the shared pitch sweep (tracked operators)"),
            ParamSpec("pitch_decay_s", "s", 0.005, 2.0, 0.1, "log", "T60 of the pitch sweep back to f0"),
        ]
        if channels == 2:
            specs.append(ParamSpec("stereo_spread", "", 0.0, 1.0, 0.5, "linear", "how far operators are panned apart"))
        super().__init__(specs, batch_size=batch_size, sample_rate=sample_rate, channels=channels)
        self.n_operators = n
        self.feedback = feedback
        self.fixed_frequency = fixed_frequency
        self.register_buffer("mod_mask", torch.ones(n, n).tril(-1), persistent=False)
        self.register_buffer("pan_positions", _pan_positions(n), persistent=False)
        level = [1.0] + [0.0] * (n - 1)
        ratio = [min(16.0, float(k + 1)) for k in range(n)]
        mod = torch.zeros(n, n)
        if n > 1:
            mod[1, 0] = 1.5
        self.set_controls({"level": level, "ratio": ratio, "mod_index": mod})

    #: operator ratios a drawn patch snaps to (sub-octave, unison and the first harmonics)
    HARMONIC_RATIOS = (0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
    #: chance that a drawn operator sits on :data:`HARMONIC_RATIOS` (else anywhere on the ratio range)
    HARMONIC_CHANCE = 0.75
    #: chance that an operator other than 0 is a carrier / that a permitted modulation path is used
    CARRIER_CHANCE = 0.35
    MODULATION_CHANCE = 0.5
    #: level of an operator drawn silent and index of an unused path (inside the ranges: still trainable)
    QUIET = 0.02

    @torch.no_grad()
    def propose_(self, generator: torch.Generator | None = None) -> "FMSynth":
        """Draw patches the way FM patches are built, for a population search: ratios mostly on a
        harmonic lattice, operator 0 a carrier at ratio 1 and each other operator one with chance
        :data:`CARRIER_CHANCE`, each modulation path ``j > k`` used with chance :data:`MODULATION_CHANCE`
        with an index skewed toward small values (``8 u^2`` rad); the rest as :meth:`randomize_`."""
        self.randomize_(generator)
        b, n = self.batch_size, self.n_operators

        def u(*shape: int) -> torch.Tensor:
            return torch.rand(shape, generator=generator)

        lattice = torch.tensor(self.HARMONIC_RATIOS)
        pick = lattice[torch.randint(len(lattice), (b, n), generator=generator)]
        ratio = torch.where(u(b, n) < self.HARMONIC_CHANCE, pick, self.controls()["ratio"].cpu())
        ratio[:, 0] = 1.0                   # operator 0 plays f0 itself
        carrier = u(b, n) < self.CARRIER_CHANCE
        carrier[:, 0] = True
        level = torch.where(carrier, 0.4 + 0.6 * u(b, n), torch.full((b, n), self.QUIET))
        used = (u(b, n, n) < self.MODULATION_CHANCE) & self.mod_mask.cpu().bool()
        mod_index = torch.where(used, (8.0 * u(b, n, n).square()).clamp(self.QUIET, 7.9),
                                torch.full((b, n, n), self.QUIET))
        for name, value in (("ratio", ratio), ("level", level), ("mod_index", mod_index)):
            self.raw[name].copy_(self.param_specs[name].from_physical(value).to(self.raw[name]))
        return self

    def config(self) -> dict[str, Any]:
        return {"n_operators": self.n_operators, "sample_rate": self.sample_rate, "channels": self.channels,
                "feedback": self.feedback, "fixed_frequency": list(self.fixed_frequency)}

    def controls(self) -> dict[str, torch.Tensor]:
        """Physical values; ``mod_index`` entries with ``j <= k`` are exactly 0."""
        out = super().controls()
        out["mod_index"] = out["mod_index"] * self.mod_mask.to(out["mod_index"].dtype)
        return out

    def render(self, controls: Mapping[str, torch.Tensor], n_samples: int) -> torch.Tensor:
        """Render ``(batch, channels, n_samples)`` audio from physical controls.

        ``controls`` maps every parameter name to a tensor ``(batch, *shape)`` (as from
        :meth:`controls`); the output dtype is that of the controls.

        Renders longer than ``2**22`` samples x batch (e.g. batch 64 x 1.5 s at 44.1 kHz)
        run the audio-rate operator chain over time chunks of that size; with
        autograd on, each chunk is a :func:`torch.utils.checkpoint.checkpoint`
        (recomputed in the backward pass), so memory does not grow with the length
        of the render. Shorter renders run in one piece (fastest).
        """
        n_samples = int(n_samples)
        if n_samples < 1:
            raise SDSAudioError(f"n_samples must be >= 1, got {n_samples}")
        sr = self.sample_rate
        f0 = controls["f0_hz"]
        dtype, device = f0.dtype, f0.device
        batch = f0.shape[0]
        fixed = any(self.fixed_frequency)

        hop = dsp.control_hop(sr)
        t_ctrl, n_blocks = dsp.control_grid(n_samples, hop, sr, dtype, device)
        semitones = controls["pitch_env_semitones"]
        # the sweep is integrated in float64 (block starts) and used in the working dtype inside blocks
        sweep64 = dsp.pitch_multiplier(t_ctrl.double(), semitones.double(), controls["pitch_decay_s"].double())
        start_warped = dsp.warped_block_start(sweep64, hop, sr)                          # (B, nb) float64
        sweep = sweep64.to(dtype)                                                        # (B, nb+1)
        start_linear = torch.arange(n_blocks, dtype=torch.float64, device=device) * (hop / sr)

        tracked_hz = f0[:, None] * controls["ratio"]                                     # (B, N)
        inst_hz = tracked_hz[..., None] * sweep[:, None, :]                               # (B, N, nb+1)
        fixed_hz = controls["fixed_hz"] if fixed else None
        if fixed:
            inst_hz = torch.where(torch.tensor(self.fixed_frequency, device=device)[:, None],
                                  fixed_hz[..., None], inst_hz)
        env_ctrl = dsp.attack_decay_envelope(t_ctrl, controls["attack_s"], controls["decay_s"], controls["sustain"])
        env_ctrl = dsp.flush_tiny(env_ctrl * dsp.nyquist_gain(inst_hz, sr))             # (B, N, nb+1)
        feedback = controls["feedback"] if self.feedback else None
        mod = controls["mod_index"] * self.mod_mask.to(dtype)

        level = controls["level"]
        weight = level / torch.clamp(level.sum(dim=1, keepdim=True), min=1.0)           # (B, N)
        if self.channels == 2:
            pan = dsp.constant_power_pan(self.pan_positions.to(dtype) * controls["stereo_spread"][:, None])
            mix = (weight[..., None] * pan).transpose(1, 2)                              # (B, 2, N)
        else:
            mix = weight[:, None, :]

        blocks_per_chunk = max(1, _CHUNK_ELEMENTS // (batch * hop))
        use_checkpoint = torch.is_grad_enabled() and n_blocks > blocks_per_chunk
        chunks = []
        for b0 in range(0, n_blocks, blocks_per_chunk):
            b1 = min(n_blocks, b0 + blocks_per_chunk)
            args = (tracked_hz, fixed_hz, start_warped[:, b0:b1], start_linear[b0:b1], sweep[:, b0:b1 + 1],
                    env_ctrl[:, :, b0:b1 + 1], feedback, mod, mix)
            if use_checkpoint:
                chunks.append(torch.utils.checkpoint.checkpoint(self._render_blocks, *args, use_reentrant=False))
            else:
                chunks.append(self._render_blocks(*args))
        out = chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=-1)
        return out[..., :n_samples]

    def _render_blocks(self, tracked_hz: torch.Tensor, fixed_hz: torch.Tensor | None, start_warped: torch.Tensor,
                       start_linear: torch.Tensor, sweep: torch.Tensor, env_ctrl: torch.Tensor,
                       feedback: torch.Tensor | None, mod: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """Operator chain over a run of control blocks -> ``(B, C, n_blocks * hop)``."""
        sr = self.sample_rate
        hop = dsp.control_hop(sr)
        within_warped = dsp.warped_block_offsets(sweep, hop, sr)                          # (B, nb, hop)
        within_linear = torch.arange(hop, dtype=sweep.dtype, device=sweep.device) / sr
        outputs: list[torch.Tensor | None] = [None] * self.n_operators
        for k in reversed(range(self.n_operators)):
            if self.fixed_frequency[k]:
                phase = dsp.oscillator_phase(fixed_hz[:, k], start_linear, within_linear)
            else:
                phase = dsp.oscillator_phase(tracked_hz[:, k], start_warped, within_warped)
            for j in range(k + 1, self.n_operators):
                phase = torch.addcmul(phase, mod[:, j, k, None], outputs[j])
            env = dsp.interpolate_control(env_ctrl[:, k], hop)                            # (B, nb*hop)
            if feedback is not None:
                phase = dsp.kepler_solve(phase, feedback[:, k, None] * env)
            outputs[k] = env * torch.sin(phase)
        return torch.bmm(mix, torch.stack(outputs, dim=1))
