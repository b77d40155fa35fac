"""DX7Synth: a differentiable Yamaha DX7 voice whose parameters are the voice's own fields.

The optimised parameters are the DX7 voice fields in the DX7's units (continuous
inside optimisation, rounded to the integer fields on export by :meth:`DX7Synth.to_voice`):

* per operator (shape ``(6,)``, operator 1 first): ``output_level`` 0..99, ``coarse``
  0..31, ``fine`` 0..99, ``detune`` -7..+7; ``eg_rate`` / ``eg_level`` ``(6, 4)`` 0..99;
* ``feedback`` 0..7, ``transpose_semitones`` -24..+24 (the voice's transpose, 24 = none on
  the file), ``pitch_eg_rate`` / ``pitch_eg_level`` ``(4,)`` 0..99.

Constructor settings (not optimised, exported as they are): ``algorithm`` 1..32, per operator
fixed-frequency mode, keyboard level scaling (break point, depths, curves), keyboard rate
scaling, key velocity sensitivity, amplitude-modulation sensitivity, the LFO fields, oscillator
key sync, the voice name; and the note played: MIDI ``key`` and ``velocity``.

How a note renders (the tables are data in :mod:`sds_audio.synths.dx7_tables`):

* **Note length.** The key is held for ``hold_fraction`` of the render (default 0.75), then
  released: the envelopes go to their 4th stage (note-off) for the rest.
* **Envelopes** run in the log domain (octaves of amplitude), in closed form per stage:
  a falling stage moves at the rate's speed (linear in dB), a rising stage jumps to -50 dB and
  then rises at ``(16 - floor(level))`` times that speed; a stage between two equal levels holds
  for the DX7's static time; the envelope starts from silence. Operator gain is
  ``2 ** (level - 15)``; output level, envelope levels, keyboard level scaling and velocity
  add in the DX7's level steps. Levels and the pitch are evaluated once per engine block (64
  samples at 44.1 kHz, :func:`engine_hop`; one block ahead, as the DX7's engine does) and the
  gains ramp linearly across each block.
* **Frequencies.** Ratio mode: ``key frequency * coarse (0 -> 0.5) * (1 + fine / 100)``, detuned
  by the DX7's key-dependent cents per step; fixed mode: ``10 ** (coarse % 4 + fine / 100)`` Hz.
  The pitch envelope (+-4 octaves, linear in cents) moves ratio-mode operators only.
* **Operators** are sines; a modulator at full scale moves its carrier's phase by 4 pi rad. The
  feedback operator (or, in algorithms 4 and 6, the chain the loop runs through) feeds the mean
  of its two previous output samples back into its phase, as the DX7 does, with gain
  ``2 pi * 2 ** (feedback - 7)`` (a quarter in algorithms 4, 6, 32). This one-sample recurrence
  is computed in segments of 128 samples run side by side, each started 128 samples early
  from silence (:func:`~sds_audio.synths.dx7_dsp.feedback_loop`, whose gradient is the
  adjoint recurrence, run in one reverse pass): sample-exact where the loop
  forgets its start within the warm-up (feedback up to 5, and up to 7 in the quarter-strength
  algorithms, measured); where the recurrence is chaotic (6-7 elsewhere: its samples then
  hinge on the last bit of any engine's arithmetic) the segments give its spectrum.
* **Output**: the carriers' sum divided by the carrier count (so it stays in [-1, 1]; Dexed
  renders the plain sum), the same in both channels when stereo. Partials near Nyquist fade out
  smoothly (:func:`~sds_audio.synths.dsp.nyquist_gain`).

Continuous relaxations between the integers: tables are interpolated linearly (with the
gradient of a 3-tap smoothed table where the DX7's repeats entries), coarse 0..1 goes from
ratio 0.5 to 1, feedback below 1 scales linearly to 0, fixed-mode coarse wraps modulo 4 around
its rounding point. By default the pitch fields are rounded in the render (``quantize_pitch``).

Left out: the LFO (its fields are kept and exported, but it does not modulate; amplitude
modulation sensitivity only lowers the level, as it does with the LFO's depth at 0),
pitch-bend, oscillator key sync (all oscillators start at phase 0), and the 12-bit output
quantisation of Dexed's Mark I engine (its noise floor, about 60-70 dB below the peak).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from ..errors import SDSAudioError
from . import dsp, dx7_dsp
from . import dx7_tables as tab
from .base import Synth
from .params import ParamSpec

#: the fields that place partials in frequency; rounded in the render when ``quantize_pitch``
PITCH_FIELDS = ("coarse", "fine", "detune", "transpose_semitones", "pitch_eg_level")

#: held (not optimised) per-operator fields and their largest values
OPERATOR_HELD_FIELDS = {"breakpoint": 99, "left_depth": 99, "right_depth": 99, "left_curve": 3, "right_curve": 3,
                        "rate_scaling": 7, "amp_mod_sens": 3, "key_vel_sens": 7}
#: held global fields and their largest values
GLOBAL_HELD_FIELDS = {"osc_key_sync": 1, "lfo_speed": 99, "lfo_delay": 99, "lfo_pitch_depth": 99,
                      "lfo_amp_depth": 99, "lfo_sync": 1, "lfo_wave": 5, "pitch_mod_sens": 7}
_HELD_DEFAULTS = {"breakpoint": 39, "left_depth": 0, "right_depth": 0, "left_curve": 0, "right_curve": 0,
                  "rate_scaling": 0, "amp_mod_sens": 0, "key_vel_sens": 0, "osc_key_sync": 1, "lfo_speed": 35,
                  "lfo_delay": 0, "lfo_pitch_depth": 0, "lfo_amp_depth": 0, "lfo_sync": 0, "lfo_wave": 0,
                  "pitch_mod_sens": 0}


def default_held_fields() -> dict[str, Any]:
    """The held fields of the DX7's INIT VOICE (per-operator ones as lists of 6)."""
    out: dict[str, Any] = {k: [_HELD_DEFAULTS[k]] * 6 for k in OPERATOR_HELD_FIELDS}
    out.update({k: _HELD_DEFAULTS[k] for k in GLOBAL_HELD_FIELDS})
    return out


def _check_held(held: Mapping[str, Any]) -> dict[str, Any]:
    out = default_held_fields()
    for key, value in held.items():
        if key in OPERATOR_HELD_FIELDS:
            top = OPERATOR_HELD_FIELDS[key]
            if not (isinstance(value, list) and len(value) == 6
                    and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= top for v in value)):
                raise SDSAudioError(f"held.{key} must be a list of 6 integers 0..{top}, got {value!r}")
            out[key] = list(value)
        elif key in GLOBAL_HELD_FIELDS:
            top = GLOBAL_HELD_FIELDS[key]
            if not (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= top):
                raise SDSAudioError(f"held.{key} must be an integer 0..{top}, got {value!r}")
            out[key] = value
        else:
            known = ", ".join(list(OPERATOR_HELD_FIELDS) + list(GLOBAL_HELD_FIELDS))
            raise SDSAudioError(f"unknown held DX7 field {key!r}; known: {known}")
    return out


class DX7Synth(Synth):
    """Differentiable DX7 voice (see the module docstring).

    Args:
        algorithm: 1..32, as on the DX7's panel; or a list of them, one per candidate, cycling
            over the batch (the prompt task's restarts try different algorithms this way).
        key: MIDI key played (0..127); the voice's transpose is added to it.
        velocity: key velocity 1..127.
        hold_fraction: share of the render the key is held (0 < x <= 1).
        fixed_frequency: per operator (operator 1 first), True for fixed-frequency mode.
        held: the voice fields that are not optimised (:data:`OPERATOR_HELD_FIELDS` as lists
            of 6, :data:`GLOBAL_HELD_FIELDS`); missing ones take the INIT VOICE's values.
        name: the voice name (10 printable ASCII characters, padded / cut).
        quantize_pitch: render :data:`PITCH_FIELDS` rounded to the DX7's integers, with their
            gradients passed straight through (the optimiser then hears the pitches the exported
            voice plays; left continuous, rounding them on export moves partials: a median
            log-spectral distance of 7 dB for coarse alone on random voices,
            ``benchmarks/dx7_exactness.py``). Levels and rates stay continuous (rounding them costs
            about 0.1 dB).
        sample_rate, channels, batch_size: as for every synth.
    """

    synth_type = "dx7"

    def __init__(self, algorithm: int | Sequence[int] = 1, key: int = 60, velocity: int = 100,
                 hold_fraction: float = 0.75,
                 fixed_frequency: Sequence[bool] | None = None, held: Mapping[str, Any] | None = None,
                 name: str = "SDS VOICE", quantize_pitch: bool = True, sample_rate: int = 44100, channels: int = 2,
                 batch_size: int = 1):
        from ..exports.syx import check_name

        algorithms = list(algorithm) if isinstance(algorithm, (list, tuple)) else [algorithm]
        if not 1 <= len(algorithms) <= 32:
            raise SDSAudioError(f"algorithm must be an integer 1..32 or a list of 1 to 32 of them, got {algorithm!r}")
        checks = [("algorithm", a, 1, 32) for a in algorithms] + [("key", key, 0, 127), ("velocity", velocity, 1, 127)]
        for what, value, lo, hi in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise SDSAudioError(f"{what} must be an integer from {lo} to {hi}, got {value!r}")
        if not isinstance(quantize_pitch, bool):
            raise SDSAudioError(f"quantize_pitch must be true or false, got {quantize_pitch!r}")
        if not (isinstance(hold_fraction, (int, float)) and not isinstance(hold_fraction, bool)
                and 0.0 < hold_fraction <= 1.0):
            raise SDSAudioError(f"hold_fraction must be in (0, 1], got {hold_fraction!r}")
        fixed = [False] * 6 if fixed_frequency is None else list(fixed_frequency)
        if len(fixed) != 6 or not all(isinstance(f, bool) for f in fixed):
            raise SDSAudioError(f"fixed_frequency must be a list of 6 booleans, got {fixed_frequency!r}")
        name = str(name)[:10].ljust(10)
        check_name(name)
        op, eg = (6,), (6, 4)
        specs = [
            ParamSpec("output_level", "", 0.0, 99.0, 0.0, "linear", "operator output level (99 = 0 dB, 0.75 dB/step)",
                      op),
            ParamSpec("coarse", "ratio", 0.0, 31.0, 1.0, "linear", "frequency coarse (ratio mode: multiple, 0 = 0.5)",
                      op),
            ParamSpec("fine", "%", 0.0, 99.0, 0.0, "linear", "frequency fine (ratio mode: +1 % per step)", op),
            ParamSpec("detune", "step", -7.0, 7.0, 0.0, "linear", "detune (about 1 cent per step at 440 Hz)", op),
            ParamSpec("eg_rate", "", 0.0, 99.0, 99.0, "linear", "envelope rates R1..R4", eg),
            ParamSpec("eg_level", "", 0.0, 99.0, 99.0, "linear", "envelope levels L1..L4", eg),
            ParamSpec("feedback", "", 0.0, 7.0, 0.0, "linear", "feedback of the algorithm's feedback loop"),
            ParamSpec("transpose_semitones", "semitones", -24.0, 24.0, 0.0, "linear", "voice transpose"),
            ParamSpec("pitch_eg_rate", "", 0.0, 99.0, 99.0, "linear", "pitch envelope rates R1..R4", (4,)),
            ParamSpec("pitch_eg_level", "", 0.0, 99.0, 50.0, "linear", "pitch envelope levels (50 = no offset)",
                      (4,)),
        ]
        super().__init__(specs, batch_size=batch_size, sample_rate=sample_rate, channels=channels)
        self.algorithms = algorithms
        self.key = key
        self.velocity = velocity
        self.hold_fraction = float(hold_fraction)
        self.fixed_frequency = fixed
        self.held = _check_held(held or {})
        self.name = name
        self.quantize_pitch = quantize_pitch
        self._register_tables()
        self.set_controls({"output_level": [99.0] + [0.0] * 5,
                           "eg_level": [[99.0, 99.0, 99.0, 0.0]] * 6})

    def _register_tables(self) -> None:
        f32 = torch.float32
        h = self.held
        keys = range(128)
        rs = [[tab.rate_scaling_delta(k, h["rate_scaling"][o]) for o in range(6)] for k in keys]
        ls = [[tab.level_scaling_offset(k, h["breakpoint"][o], h["left_depth"][o], h["right_depth"][o],
                                        h["left_curve"][o], h["right_curve"][o]) for o in range(6)] for k in keys]
        vel = [tab.velocity_offset_steps(self.velocity, h["key_vel_sens"][o]) for o in range(6)]
        ams = [tab.AMS_LEVEL_FACTOR if h["amp_mod_sens"][o] else 1.0 for o in range(6)]
        for name, value in (("scaled_level", tab.SCALED_LEVEL), ("eg_level_table", tab.EG_LEVEL_TABLE),
                            ("static_hold", tab.STATIC_HOLD_S), ("pitch_level_table", tab.PITCH_EG_LEVEL),
                            ("pitch_rate_table", tab.PITCH_EG_RATE), ("rate_scaling_delta", rs),
                            ("level_scaling", ls), ("velocity_steps", vel), ("ams_factor", ams)):
            self.register_buffer(name, torch.tensor(value, dtype=f32), persistent=False)

    @property
    def algorithm(self) -> int:
        """The algorithm of candidate 0 (of every candidate when the synth has one)."""
        return self.algorithms[0]

    def algorithm_of(self, index: int) -> int:
        """Candidate ``index``'s algorithm: the list cycles over the batch."""
        return self.algorithms[index % len(self.algorithms)]

    def config(self) -> dict[str, Any]:
        algorithm = self.algorithms[0] if len(self.algorithms) == 1 else list(self.algorithms)
        return {"algorithm": algorithm, "key": self.key, "velocity": self.velocity,
                "hold_fraction": self.hold_fraction, "fixed_frequency": list(self.fixed_frequency),
                "held": {k: (list(v) if isinstance(v, list) else v) for k, v in self.held.items()},
                "name": self.name, "quantize_pitch": self.quantize_pitch, "sample_rate": self.sample_rate,
                "channels": self.channels}

    #: ranges of :meth:`randomize_` that differ from the parameter's whole range
    RANDOM_RANGES: dict[str, tuple[Any, Any]] = {
        "output_level": (60.0, 99.0),                                   # audible carriers, index >= 0.4 rad
        "eg_level": ([50.0, 50.0, 50.0, 0.0], [99.0, 99.0, 99.0, 99.0]),
        "eg_rate": ([40.0, 20.0, 20.0, 30.0], [99.0, 99.0, 99.0, 99.0]),
        "pitch_eg_level": (45.0, 55.0),                                 # within ~2 semitones of the key
        "transpose_semitones": (-12.0, 12.0),
    }

    @torch.no_grad()
    def randomize_(self, generator: torch.Generator | None = None, margin: float = 0.02) -> "DX7Synth":
        """Uniform draws along every range, narrowed by :data:`RANDOM_RANGES`: a voice drawn over
        the DX7's whole ranges is mostly inaudible (levels multiply) or sweeps +-4 octaves."""
        super().randomize_(generator, margin)
        for name, (lo, hi) in self.RANDOM_RANGES.items():
            spec, raw = self.param_specs[name], self.raw[name]
            lo, hi = torch.as_tensor(lo, dtype=raw.dtype), torch.as_tensor(hi, dtype=raw.dtype)
            x01 = torch.rand(raw.shape, generator=generator, dtype=raw.dtype, device="cpu")
            raw.copy_(spec.from_physical(lo + (hi - lo) * (margin + (1 - 2 * margin) * x01)).to(raw.device))
        return self

    #: coarse settings a drawn voice snaps to (0 = ratio 0.5, then multiples 1..8) and the chance it does
    HARMONIC_COARSE = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
    HARMONIC_CHANCE = 0.75

    @torch.no_grad()
    def propose_(self, generator: torch.Generator | None = None) -> "DX7Synth":
        """Draws for a population search: :meth:`randomize_`, then each operator with chance
        :data:`HARMONIC_CHANCE` on a harmonic ratio (coarse from :data:`HARMONIC_COARSE`, fine 0).
        The algorithm is a setting: a population built with a list of algorithms (as the ``dx7``
        command's is, one per candidate, cycling) searches over them."""
        self.randomize_(generator)
        shape = self.raw["coarse"].shape
        lattice = torch.tensor(self.HARMONIC_COARSE)
        snap = torch.rand(shape, generator=generator) < self.HARMONIC_CHANCE
        coarse = lattice[torch.randint(len(lattice), shape, generator=generator)]
        controls = self.controls()
        coarse = torch.where(snap, coarse, controls["coarse"].detach().cpu())
        fine = torch.where(snap, torch.zeros(shape), controls["fine"].detach().cpu())
        for name, value in (("coarse", coarse), ("fine", fine)):
            self.raw[name].copy_(self.param_specs[name].from_physical(value).to(self.raw[name]))
        return self

    # -- levels, rates, frequencies -----------------------------------------------------------
    def _key(self, controls: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Continuous MIDI note ``(B,)`` and the integer key the keyboard scalings see ``(B,)``."""
        note = self.key + controls["transpose_semitones"]
        return note, torch.round(note.detach()).clamp(0, 127).long()

    def _output_steps(self, controls: Mapping[str, torch.Tensor], key: torch.Tensor) -> torch.Tensor:
        """Per operator level in internal steps from output level, level scaling, velocity ``(B, 6)``."""
        scaled = dx7_dsp.interp(self.scaled_level.to(controls["output_level"].dtype), controls["output_level"])
        scaled = torch.clamp(scaled + self.level_scaling[key], max=127.0)
        return torch.relu(scaled * tab.OUTPUT_LEVEL_STEP + self.velocity_steps)

    def _targets_oct(self, controls: Mapping[str, torch.Tensor], key: torch.Tensor) -> torch.Tensor:
        """Envelope stage levels in octaves ``(B, 6, 4)``."""
        out = self._output_steps(controls, key)
        eg = dx7_dsp.lookup(self.eg_level_table.to(out.dtype), controls["eg_level"]) * tab.EG_LEVEL_STEP
        steps = torch.clamp(eg + out[..., None] - tab.LEVEL_OFFSET, min=float(tab.MIN_LEVEL_STEPS))
        return steps / tab.LEVEL_STEPS_PER_OCT

    def _holds(self, controls: Mapping[str, torch.Tensor], key: torch.Tensor) -> torch.Tensor:
        """Static holds of stages 1-3 ``(B, 6, 3)``: where a stage's rounded target equals the
        previous one (stage 1: where L1 rounds to 0, a twentieth of it below rate 77)."""
        with torch.no_grad():
            rounded = {k: torch.round(v) for k, v in controls.items() if k in ("output_level", "eg_level")}
            steps = torch.round(self._targets_oct(rounded, key) * tab.LEVEL_STEPS_PER_OCT)
            equal = torch.cat([(rounded["eg_level"][..., :1] == 0), steps[..., 1:3] == steps[..., 0:2]], dim=-1)
        rate = torch.clamp(controls["eg_rate"][..., :3] + self.rate_scaling_delta[key][..., None], max=99.0)
        hold = dx7_dsp.interp(self.static_hold.to(rate.dtype), rate)
        first = torch.where(rate[..., :1] < 77, hold[..., :1] / 20, hold[..., :1])
        hold = torch.cat([first, hold[..., 1:]], dim=-1)
        return torch.where(equal, hold, torch.zeros_like(hold))

    def _speeds(self, controls: Mapping[str, torch.Tensor], key: torch.Tensor) -> torch.Tensor:
        """Envelope speeds in octaves per second ``(B, 6, 4)``: log-interpolated between rates,
        with the gradient of the 3-tap smoothed curve (as :func:`~sds_audio.synths.dx7_dsp.lookup`)."""
        rate = controls["eg_rate"].clamp(0, 99)
        r0 = torch.floor(rate.detach()).clamp(max=98)
        delta = self.rate_scaling_delta[key][..., None]                                        # (B, 6, 1)

        def log2_speed(r: torch.Tensor) -> torch.Tensor:
            q = torch.clamp(torch.div(r.clamp(0, 99) * 41, 64, rounding_mode="floor") + delta, max=63)
            return torch.log2(4 + torch.remainder(q, 4)) + torch.div(q, 4, rounding_mode="floor") - 16

        at = [log2_speed(r0 + k) for k in (-1, 0, 1, 2)]
        exact = torch.lerp(at[1], at[2], rate - r0)
        smooth = torch.lerp((at[0] + at[1] + at[2]) / 3, (at[1] + at[2] + at[3]) / 3, rate - r0)
        return torch.exp2(exact.detach() + smooth - smooth.detach()) / tab.ENGINE_BLOCK_S

    def frequencies_hz(self, controls: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Operator frequencies before the pitch envelope ``(B, 6)`` in Hz."""
        note, _ = self._key(controls)
        log2_key = math.log2(440.0) + (note - 69.0) / 12.0                                     # (B,)
        coarse, fine, detune = controls["coarse"], controls["fine"], controls["detune"]
        multiple = torch.where(coarse < 1, 0.5 + 0.5 * coarse, coarse)
        cents = detune * (tab.DETUNE_A * log2_key * torch.exp(-tab.DETUNE_B * log2_key))[:, None]
        ratio_hz = torch.exp2(log2_key)[:, None] * multiple * (1 + fine / 100) * torch.exp2(cents / 1200)
        if not any(self.fixed_frequency):
            return ratio_hz
        decade = torch.remainder(coarse + 0.5, 4) - 0.5
        fixed_hz = torch.pow(10.0, decade + fine / 100) * torch.exp2(torch.relu(detune) * tab.FIXED_DETUNE_CENTS / 1200)
        mask = torch.tensor(self.fixed_frequency, device=coarse.device)
        return torch.where(mask, fixed_hz, ratio_hz)

    @staticmethod
    def feedback_gain(feedback: torch.Tensor, algorithms: Sequence[int]) -> torch.Tensor:
        """Feedback 0..7 ``(B,)`` -> gain in radians per unit output ``(B,)``; ``algorithms``: per candidate."""
        gain = torch.where(feedback >= 1, 2 * math.pi * torch.exp2(feedback - 7), feedback * (2 * math.pi / 64))
        scale = [0.25 if tab.ALGORITHMS[a - 1].reduced_feedback else 1.0 for a in algorithms]
        return gain * torch.tensor(scale, dtype=gain.dtype, device=gain.device)

    @torch.no_grad()
    def _settings_for(self, indices: Sequence[int]) -> dict[str, Any]:
        """Each gathered candidate keeps its algorithm."""
        algorithms = [self.algorithm_of(i) for i in indices]
        return {**self.config(), "algorithm": algorithms[0] if len(set(algorithms)) == 1 else algorithms}

    # -- rendering --------------------------------------------------------------------------
    def render(self, controls: Mapping[str, torch.Tensor], n_samples: int) -> torch.Tensor:
        """Render ``(batch, channels, n_samples)``: the key held for ``hold_fraction`` of it.

        Candidate ``i`` plays :meth:`algorithm_of` ``(i)``; the whole batch renders together
        (see :meth:`_render_mono`).
        """
        n_samples = int(n_samples)
        if n_samples < 1:
            raise SDSAudioError(f"n_samples must be >= 1, got {n_samples}")
        if self.quantize_pitch:     # rounded values, gradients passed straight through
            controls = {k: (v + (torch.round(v) - v).detach() if k in PITCH_FIELDS else v) for k, v in controls.items()}
        batch = controls["output_level"].shape[0]
        mono = self._render_mono(controls, n_samples, [self.algorithm_of(i) for i in range(batch)])
        return mono[:, None, :].expand(-1, self.channels, -1).contiguous()

    def _render_mono(self, controls: Mapping[str, torch.Tensor], n_samples: int,
                     algorithms: Sequence[int]) -> torch.Tensor:
        """Render ``(B, n_samples)``, candidate ``i`` playing ``algorithms[i]``.

        Envelopes, frequencies and oscillator phases do not depend on the algorithm and are
        computed for the whole batch at once. The feedback loops run once per loop length (1,
        or 2 and 3 in algorithms 6 and 4) for every candidate with that length: no DX7 loop
        operator has a modulator outside its loop, so the loops need nothing but their own
        operators' phases and gains. Then each operator, from operator 6 down, adds the outputs
        of its modulators as the candidate's algorithm wires them (:func:`_wire`).
        """
        sr = self.sample_rate
        dtype = controls["output_level"].dtype
        device = controls["output_level"].device
        _, key = self._key(controls)
        hop = engine_hop(sr)
        t_ctrl, n_blocks = dsp.control_grid(n_samples, hop, sr, dtype, device)
        t_eval = t_ctrl + tab.ENGINE_BLOCK_S
        note_off_s = self.hold_fraction * n_samples / sr

        targets = self._targets_oct(controls, key)                                               # (B, 6, 4)
        start = torch.zeros_like(targets[..., 0])
        levels = dx7_dsp.envelope_levels(start, targets, self._speeds(controls, key), self._holds(controls, key),
                                 t_eval, note_off_s) * self.ams_factor[:, None]                 # (B, 6, nb+1)

        p_levels = dx7_dsp.interp(self.pitch_level_table.to(dtype), controls["pitch_eg_level"]) * tab.PITCH_EG_UNIT_OCT
        p_speed = (dx7_dsp.lookup(self.pitch_rate_table.to(dtype), controls["pitch_eg_rate"])
                   * tab.PITCH_EG_SPEED_UNIT_OCT_PER_S)
        pitch_oct = dx7_dsp.envelope_levels(p_levels[..., 3], p_levels, p_speed, torch.zeros_like(p_levels[..., :3]),
                                    t_eval, note_off_s, pitch=True)                             # (B, nb+1)
        sweep64 = torch.exp2(pitch_oct.double())
        start_warped = dsp.warped_block_start(sweep64, hop, sr)
        within_warped = dsp.warped_block_offsets(sweep64.to(dtype), hop, sr)
        start_linear = torch.arange(n_blocks, dtype=torch.float64, device=device) * (hop / sr)
        within_linear = torch.arange(hop, dtype=dtype, device=device) / sr

        freq = self.frequencies_hz(controls)                                                    # (B, 6)
        fixed = torch.tensor(self.fixed_frequency, device=device)
        inst_hz = torch.where(fixed[:, None], freq[..., None], freq[..., None] * sweep64.to(dtype)[:, None, :])
        gain_ctrl = dsp.flush_tiny(torch.exp2(levels - tab.MAX_LEVEL_OCT) * dsp.nyquist_gain(inst_hz, sr))

        # every operator at once: (B, 6, T), then one (B, T) view per operator
        if all(self.fixed_frequency):
            start_s, within_s = start_linear, within_linear
        elif not any(self.fixed_frequency):
            start_s, within_s = start_warped[:, None], within_warped[:, None]
        else:
            start_s = torch.where(fixed[:, None], start_linear, start_warped[:, None])
            within_s = torch.where(fixed[:, None, None], within_linear, within_warped[:, None])
        phases = dx7_dsp.operator_phases(freq, start_s, within_s)[..., :n_samples].unbind(1)      # 6 x (B, T)
        gains = dx7_dsp.control_to_audio(gain_ctrl, hop)[..., :n_samples].unbind(1)
        algs = [tab.ALGORITHMS[a - 1] for a in algorithms]
        gain_fb = self.feedback_gain(controls["feedback"], algorithms)
        looped = _feedback_loops(algs, phases, gains, gain_fb)
        return _wire(algs, phases, gains, looped)

    # -- voices -------------------------------------------------------------------------------
    @torch.no_grad()
    def to_voice(self, index: int = 0, controls: Mapping[str, torch.Tensor] | None = None, name: str | None = None):
        """Candidate ``index`` as a :class:`~sds_audio.exports.syx.DX7Voice` (fields rounded)."""
        from ..exports.syx import DX7Voice, voice_name

        values = {k: v[index].double().cpu() for k, v in (controls or self.controls()).items()}

        def r(x: torch.Tensor, lo: int, hi: int) -> list[int] | int:
            out = torch.round(x).clamp(lo, hi).long()
            return out.tolist()

        ops = []
        for k in range(6):
            op = {f"r{i + 1}": r(values["eg_rate"][k, i], 0, 99) for i in range(4)}
            op.update({f"l{i + 1}": r(values["eg_level"][k, i], 0, 99) for i in range(4)})
            op.update({f: self.held[f][k] for f in OPERATOR_HELD_FIELDS})
            op.update(output_level=r(values["output_level"][k], 0, 99), osc_mode=int(self.fixed_frequency[k]),
                      coarse=r(values["coarse"][k], 0, 31), fine=r(values["fine"][k], 0, 99),
                      detune=r(values["detune"][k], -7, 7) + 7)
            ops.append(op)
        glob = {f"pr{i + 1}": r(values["pitch_eg_rate"][i], 0, 99) for i in range(4)}
        glob.update({f"pl{i + 1}": r(values["pitch_eg_level"][i], 0, 99) for i in range(4)})
        glob.update({f: self.held[f] for f in GLOBAL_HELD_FIELDS})
        glob.update(algorithm=self.algorithm_of(index) - 1, feedback=r(values["feedback"], 0, 7),
                    transpose=r(values["transpose_semitones"], -24, 24) + 24)
        voice = DX7Voice(operators=ops, globals=glob, name=voice_name(name) if name is not None else self.name)
        voice.validate()
        return voice

    @classmethod
    def from_voice(cls, voice, *, key: int = 60, velocity: int = 100, hold_fraction: float = 0.75,
                   sample_rate: int = 44100, channels: int = 2) -> tuple["DX7Synth", dict[str, torch.Tensor]]:
        """A batch-1 synth for a :class:`~sds_audio.exports.syx.DX7Voice`, and its exact controls."""
        voice.validate()
        ops, g = voice.operators, voice.globals
        held = {f: [op[f] for op in ops] for f in OPERATOR_HELD_FIELDS}
        held.update({f: g[f] for f in GLOBAL_HELD_FIELDS})
        synth = cls(algorithm=g["algorithm"] + 1, key=key, velocity=velocity, hold_fraction=hold_fraction,
                    fixed_frequency=[bool(op["osc_mode"]) for op in ops], held=held, name=voice.name,
                    sample_rate=sample_rate, channels=channels)
        controls = voice_controls(voice)
        synth.set_controls(controls)
        return synth, {k: v[None] for k, v in controls.items()}


def _feedback_loops(algs: Sequence[tab.Algorithm], phases: Sequence[torch.Tensor], gains: Sequence[torch.Tensor],
                    gain_fb: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor | None]]:
    """Every candidate's feedback loop, one :func:`~sds_audio.synths.dx7_dsp.feedback_loop` per loop length.

    Args:
        algs: per candidate its algorithm.
        phases, gains: per operator ``(B, T)`` phase (rad) and gain.
        gain_fb: ``(B,)`` feedback gain (rad per unit output).

    Returns:
        per operator that is in some candidate's loop: ``(output (B, T), mask)``, the loop's
        output where the ``(B,)`` boolean ``mask`` is true (``mask`` None: for every candidate).
    """
    batch = len(algs)
    device = phases[0].device

    def mask_of(flags: Sequence[bool]) -> torch.Tensor:
        return torch.tensor(list(flags), device=device)

    def pick(signals: Sequence[torch.Tensor], ops: Sequence[int]) -> torch.Tensor:
        """Row ``i`` of ``signals[ops[i]]`` ``(B, T)`` (``ops`` per candidate)."""
        out = signals[ops[0]]
        for op in sorted(set(ops) - {ops[0]}):
            out = torch.where(mask_of([o == op for o in ops])[:, None], signals[op], out)
        return out

    by_length: dict[int, list[int]] = {}
    for i, alg in enumerate(algs):
        by_length.setdefault(len(alg.loop), []).append(i)
    found: dict[int, list[tuple[torch.Tensor, list[bool]]]] = {}
    for length, rows in sorted(by_length.items()):
        index = None if len(rows) == batch else torch.tensor(rows, device=device)
        chain = [[algs[i].loop[m] if i in rows else algs[rows[0]].loop[m] for i in range(batch)]
                 for m in range(length)]                    # per link, per candidate (filled outside ``rows``)
        ph, g = [pick(phases, ops) for ops in chain], [pick(gains, ops) for ops in chain]
        if index is not None:
            ph, g = [x[index] for x in ph], [x[index] for x in g]
        ys = dx7_dsp.feedback_loop(ph, g, gain_fb if index is None else gain_fb[index])
        for ops, y in zip(chain, ys):
            if index is not None:
                y = y.new_zeros(batch, y.shape[-1]).index_copy(0, index, y)
            for op in set(ops):
                found.setdefault(op, []).append((y, [i in rows and ops[i] == op for i in range(batch)]))
    out: dict[int, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for op, parts in found.items():
        y, flags = parts[0]
        for other, other_flags in parts[1:]:
            y = torch.where(mask_of(other_flags)[:, None], other, y)
            flags = [f or o for f, o in zip(flags, other_flags)]
        out[op] = (y, None if all(flags) else mask_of(flags))
    return out


def _wire(algs: Sequence[tab.Algorithm], phases: Sequence[torch.Tensor], gains: Sequence[torch.Tensor],
          looped: Mapping[int, tuple[torch.Tensor, torch.Tensor | None]]) -> torch.Tensor:
    """The operators of each candidate's algorithm, from operator 6 down, and the carriers' mean ``(B, T)``.

    Operator ``k`` of candidate ``i`` is ``gain * sin(phase + MODULATION_RAD * sum of its
    modulators' outputs)``, or its loop's output where ``k`` is in the candidate's loop. A wire
    that only some candidates have is masked per candidate (adding an exact 0 elsewhere), so a
    batch of mixed algorithms computes what each candidate computes alone.
    """
    device = phases[0].device

    def column(flags: list[bool]) -> torch.Tensor | bool:
        """True / False when every candidate agrees, else a ``(B, 1)`` 0/1 mask."""
        if all(flags) or not any(flags):
            return all(flags)
        return torch.tensor(flags, dtype=phases[0].dtype, device=device)[:, None]

    outputs: list[torch.Tensor | None] = [None] * 6
    for k in reversed(range(6)):
        loop_out, in_loop = looped.get(k, (None, None))
        if loop_out is not None and in_loop is None:
            outputs[k] = loop_out
            continue
        ph = phases[k]
        for j in range(k + 1, 6):
            wire = column([j in alg.modulators[k] for alg in algs])
            if wire is True:
                ph = torch.add(ph, outputs[j], alpha=tab.MODULATION_RAD)
            elif wire is not False:
                ph = torch.addcmul(ph, wire, outputs[j], value=tab.MODULATION_RAD)
        y = gains[k] * torch.sin(ph)
        outputs[k] = y if loop_out is None else torch.where(in_loop[:, None], loop_out, y)
    mix = None
    for k in range(6):
        carrier = column([k in alg.carriers for alg in algs])
        if carrier is False:
            continue
        term = outputs[k] if carrier is True else carrier * outputs[k]
        mix = term if mix is None else mix + term
    counts = {len(alg.carriers) for alg in algs}
    if len(counts) == 1:
        return mix / counts.pop()
    return mix / torch.tensor([float(len(alg.carriers)) for alg in algs], dtype=mix.dtype, device=device)[:, None]


def engine_hop(sample_rate: int) -> int:
    """Samples per control block: the engine's block (64 samples at 44.1 kHz, 32 at 22.05 kHz).

    The DX7 engine updates envelope levels and the pitch once per block and ramps each operator's
    gain linearly across it; the renderer evaluates them on the same grid.
    """
    return max(1, int(round(sample_rate * tab.ENGINE_BLOCK_S)))


def restart_algorithms(seed: int) -> list[int]:
    """The 32 algorithms in a seeded order: restart ``i`` of a run tries the ``i``-th."""
    order = torch.randperm(32, generator=torch.Generator().manual_seed(int(seed) % 2 ** 63))
    return [int(a) + 1 for a in order]


def voice_controls(voice) -> dict[str, torch.Tensor]:
    """A voice's optimised fields as :class:`DX7Synth` physical values (unbatched tensors)."""
    ops, g = voice.operators, voice.globals
    f = torch.get_default_dtype()
    return {
        "output_level": torch.tensor([op["output_level"] for op in ops], dtype=f),
        "coarse": torch.tensor([op["coarse"] for op in ops], dtype=f),
        "fine": torch.tensor([op["fine"] for op in ops], dtype=f),
        "detune": torch.tensor([op["detune"] - 7 for op in ops], dtype=f),
        "eg_rate": torch.tensor([[op[f"r{i}"] for i in range(1, 5)] for op in ops], dtype=f),
        "eg_level": torch.tensor([[op[f"l{i}"] for i in range(1, 5)] for op in ops], dtype=f),
        "feedback": torch.tensor(float(g["feedback"]), dtype=f),
        "transpose_semitones": torch.tensor(float(g["transpose"] - 24), dtype=f),
        "pitch_eg_rate": torch.tensor([g[f"pr{i}"] for i in range(1, 5)], dtype=f),
        "pitch_eg_level": torch.tensor([g[f"pl{i}"] for i in range(1, 5)], dtype=f),
    }
