"""The Yamaha DX7's curves and tables, as data (used by :mod:`sds_audio.synths.dx7`).

Every number here is a measured or published fact about the DX7, in the units the
renderer uses. Where a table was measured, it was measured on the Dexed engine
(``dexed-py`` 0.3.0 at 44.1 kHz, single operators rendered in isolation, levels by
lock-in amplitude, pitch by spectral peak, times by threshold crossings); the
measured values agree with the DX7 facts that are published (99 = 0 dB, ~0.75 dB per
output-level step, a +-4 octave pitch envelope, the 32 algorithm charts).

Units:

* **Level (log2)**: operator gain is ``2 ** (level_oct - MAX_LEVEL_OCT)``: one unit
  is an octave of amplitude (6.02 dB); 15 octaves is full scale (gain 1).
* Internal level steps are 1/256 octave (0.0235 dB); an output-level step is 32 of
  them (1/8 octave, 0.753 dB).
* **Rates**: the envelope generator's increments, in octaves per second.
"""

from __future__ import annotations

import math

# -----------------------------------------------------------------------------------
# levels
# -----------------------------------------------------------------------------------
#: full-scale operator level in octaves (gain 1)
MAX_LEVEL_OCT = 15.0
#: level steps per octave
LEVEL_STEPS_PER_OCT = 256
#: internal steps per output-level unit (1/8 octave = 0.753 dB)
OUTPUT_LEVEL_STEP = 32
#: internal steps per (halved) envelope-level unit
EG_LEVEL_STEP = 64
#: offset of the level sum: envelope level 99 and output level 99 give exactly MAX_LEVEL_OCT
LEVEL_OFFSET = 4256
#: lowest level an envelope target can take (internal steps): about -90 dB
MIN_LEVEL_STEPS = 16

# Output level 0..99 -> scaled level 0..127. Above 19 it is ``28 + level``; below, the
# DX7 compresses the bottom of the range (level 0 is silence, 19 is ~-61 dB).
_LOW_LEVELS = (0, 5, 9, 13, 17, 20, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 42, 43, 45, 46)
#: scaled output level per output-level setting 0..99 (index = setting)
SCALED_LEVEL = tuple(_LOW_LEVELS[v] if v < 20 else 28 + v for v in range(100))
#: envelope levels use the same curve, halved (so two adjacent EG levels can share a value):
#: ``EG_LEVEL_TABLE[L] = SCALED_LEVEL[L] // 2``
EG_LEVEL_TABLE = tuple(v // 2 for v in SCALED_LEVEL)

# -----------------------------------------------------------------------------------
# envelope rates
# -----------------------------------------------------------------------------------
#: the engine updates envelopes every 64 samples at 44.1 kHz; times below are in seconds
ENGINE_BLOCK_S = 64.0 / 44100.0


def eg_quantised_rate(rate: int, rate_scaling_delta: int = 0) -> int:
    """Rate 0..99 (+ keyboard rate-scaling delta) -> the EG's 0..63 rate index."""
    return min(63, (rate * 41) // 64 + rate_scaling_delta)


def eg_octaves_per_s(q: int) -> float:
    """Envelope speed of rate index ``q`` (0..63) in octaves per second.

    The increment per 64-sample block is ``(4 + q % 4) * 2 ** (q // 4)`` in units of
    2**-16 octave, so the speed doubles every 4 indices. A falling segment moves at
    exactly this speed (linear in dB: rate 0 falls 0.25 dB/s, rate 99 ~14,500 dB/s).
    """
    return (4 + q % 4) * 2.0 ** (q // 4 - 16) / ENGINE_BLOCK_S


#: a rising segment first jumps to this level (octaves; -50 dB below full scale) ...
ATTACK_JUMP_OCT = 1716.0 / 256.0
#: ... then rises at ``(ATTACK_CEILING_OCT - floor(level_oct))`` times the rate's speed:
#: fast at low levels, slowing as it nears full scale (measured: 16).
ATTACK_CEILING_OCT = 16

#: Time (s) a segment whose start and target levels are equal still takes, per rate
#: 0..99 (the DX7 waits rather than skipping it). Measured on Dexed: the hold between
#: two equal level-99 stages, +-1.5 ms (one engine block).
STATIC_HOLD_S = (
    40.0, 40.0, 32.0, 32.0, 27.0, 23.0, 22.497, 20.0, 16.0, 16.0,
    13.248, 11.498, 11.398, 9.998, 9.498, 7.998, 6.998, 6.497, 5.748, 4.998,
    4.998, 3.998, 3.297, 3.297, 2.847, 2.498, 2.498, 1.998, 1.998, 1.698,
    1.398, 1.398, 1.248, 1.097, 0.998, 0.848, 0.708, 0.698, 0.623, 0.623,
    0.498, 0.418, 0.398, 0.348, 0.318, 0.298, 0.248, 0.208, 0.208, 0.173,
    0.148, 0.148, 0.123, 0.123, 0.097, 0.089, 0.089, 0.075, 0.062, 0.060,
    0.049, 0.042, 0.041, 0.039, 0.030, 0.029, 0.026, 0.023, 0.019, 0.017,
    0.017, 0.015, 0.010, 0.010, 0.010, 0.007, 0.007, 0.007, 0.007, 0.007,
    0.006, 0.006, 0.006, 0.004, 0.004, 0.004, 0.004, 0.003, 0.003, 0.003,
    0.001, 0.001, 0.001, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
)


def rate_scaling_delta(midi_note: int, sensitivity: int) -> int:
    """Keyboard rate scaling: rate-index increase for a key (sensitivity 0..7)."""
    group = min(31, max(0, midi_note // 3 - 7))
    return (sensitivity * group) >> 3


# -----------------------------------------------------------------------------------
# keyboard level scaling and velocity
# -----------------------------------------------------------------------------------
#: curve codes of the voice format: 0 -LIN, 1 -EXP, 2 +EXP, 3 +LIN
CURVE_NAMES = ("-lin", "-exp", "+exp", "+lin")
#: exponential-curve offsets per group of 3 keys away from the break point
EXP_CURVE = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14, 16, 19, 23, 27, 33, 39, 47, 56, 66,
             80, 94, 110, 126, 142, 158, 174, 190, 206, 222, 238, 250)
#: the break point's MIDI key is ``breakpoint + BREAKPOINT_KEY_OFFSET`` (+-1 key by the grouping)
BREAKPOINT_KEY_OFFSET = 17


def _curve_offset(group: int, depth: int, curve: int) -> int:
    if curve in (0, 3):
        scale = (group * depth * 329) >> 12
    else:
        scale = (EXP_CURVE[min(group, len(EXP_CURVE) - 1)] * depth * 329) >> 15
    return -scale if curve < 2 else scale


def level_scaling_offset(midi_note: int, breakpoint: int, left_depth: int, right_depth: int,
                         left_curve: int, right_curve: int) -> int:
    """Keyboard level scaling for a key, in output-level units (1/8 octave)."""
    distance = midi_note - breakpoint - BREAKPOINT_KEY_OFFSET
    if distance >= 0:
        return _curve_offset((distance + 1) // 3, right_depth, right_curve)
    return _curve_offset(-(distance - 1) // 3, left_depth, left_curve)


#: velocity response per velocity // 2 (0..63), relative to full: sensitivity s adds
#: ``((s * VELOCITY_CURVE[v // 2] + 7) >> 3) * 16`` internal level steps
VELOCITY_CURVE = tuple(v - 239 for v in (
    0, 70, 86, 97, 106, 114, 121, 126, 132, 138, 142, 148, 152, 156, 160, 163,
    166, 170, 173, 174, 178, 181, 184, 186, 189, 190, 194, 196, 198, 200, 202, 205,
    206, 209, 211, 214, 216, 218, 220, 222, 224, 225, 227, 229, 230, 232, 233, 235,
    237, 238, 240, 241, 242, 243, 244, 246, 246, 248, 249, 250, 251, 252, 253, 254))


def velocity_offset_steps(velocity: int, sensitivity: int) -> int:
    """Level change from key velocity 0..127 at sensitivity 0..7, in internal level steps."""
    value = VELOCITY_CURVE[max(0, min(127, velocity)) >> 1]
    return ((sensitivity * value + 7) >> 3) << 4


# -----------------------------------------------------------------------------------
# frequency
# -----------------------------------------------------------------------------------
def coarse_ratio(coarse: int) -> float:
    """Ratio-mode coarse 0..31 -> frequency multiple (0 means 0.5)."""
    return 0.5 if coarse == 0 else float(coarse)


#: Ratio-mode detune: cents per step at a key whose frequency is ``f`` Hz is
#: ``DETUNE_A * log2(f) * exp(-DETUNE_B * log2(f))`` (about 2.1 cents at 55 Hz, 0.97 at
#: 440 Hz, 0.4 at 3.5 kHz per step; measured over MIDI keys 33-105, linear in the step).
DETUNE_A = 1200.0 * 0.0209 / 7.0
DETUNE_B = 0.396
#: fixed-mode detune: cents per step, upward steps only
FIXED_DETUNE_CENTS = 0.963


def fixed_frequency_hz(coarse: int, fine: int) -> float:
    """Fixed mode: ``10 ** (coarse % 4 + fine / 100)`` Hz (1 Hz .. 9.77 kHz)."""
    return 10.0 ** (coarse % 4 + fine / 100.0)


# -----------------------------------------------------------------------------------
# feedback
# -----------------------------------------------------------------------------------
def feedback_gain(feedback: int, reduced: bool = False) -> float:
    """Self-feedback 0..7 -> phase gain (radians per unit output) applied to the mean of the
    operator's two previous output samples: ``2 pi * 2 ** (feedback - 7)`` (0 for 0);
    a quarter of that in the algorithms whose feedback loop is special (4, 6, 32, Dexed's
    behaviour, measured)."""
    if feedback <= 0:
        return 0.0
    return 2.0 * math.pi * 2.0 ** (feedback - 7) * (0.25 if reduced else 1.0)


#: an operator with amplitude-modulation sensitivity 1-3 plays its envelope level (octaves) times this
#: even when the LFO's amplitude depth is 0 (Dexed: -1.07 dB at full level, measured; proportional to
#: the level in octaves)
AMS_LEVEL_FACTOR = 1.0 - 0.01187

#: phase deviation (radians) a modulator at full scale (gain 1) applies to its carrier: 4 pi
MODULATION_RAD = 4.0 * math.pi

# -----------------------------------------------------------------------------------
# pitch envelope
# -----------------------------------------------------------------------------------
#: pitch offset per pitch-EG level 0..99, in units of 1/32 octave (37.5 cents); 50 is 0,
#: 0 is -4 octaves, 99 is +3.97 octaves
PITCH_EG_LEVEL = (
    -128, -116, -104, -95, -85, -76, -68, -61, -56, -52, -49, -46, -43, -41, -39, -37,
    -35, -33, -32, -31, -30, -29, -28, -27, -26, -25, -24, -23, -22, -21, -20, -19, -18,
    -17, -16, -15, -14, -13, -12, -11, -10, -9, -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2,
    3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25,
    26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 38, 40, 43, 46, 49, 53, 58, 65, 73, 82, 92,
    103, 115, 127)
PITCH_EG_UNIT_OCT = 1.0 / 32.0
#: pitch-EG speed per rate 0..99, in units of PITCH_EG_SPEED_UNIT_OCT_PER_S (linear in cents)
PITCH_EG_RATE = (
    1, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14,
    14, 15, 16, 16, 17, 18, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 30, 31, 33, 34,
    36, 37, 38, 39, 41, 42, 44, 46, 47, 49, 51, 53, 54, 56, 58, 60, 62, 64, 66, 68, 70,
    72, 74, 76, 79, 82, 85, 88, 91, 94, 98, 102, 106, 110, 115, 120, 125, 130, 135, 141,
    147, 153, 159, 165, 171, 178, 185, 193, 202, 211, 232, 243, 254, 255)
#: one pitch-EG rate unit: 1/21.3 octave per second (56.3 cents/s)
PITCH_EG_SPEED_UNIT_OCT_PER_S = 1.0 / 21.3

# -----------------------------------------------------------------------------------
# the 32 algorithms
# -----------------------------------------------------------------------------------
# Each algorithm as written on the DX7's panel chart, operators numbered 1..6:
# "modulator>target" edges, the carriers, and the feedback edge (source>target; a
# self-loop for all but algorithms 4 and 6, whose loop runs through a chain).
_ALGORITHMS = (
    ("2>1 6>5 5>4 4>3", (1, 3), (6, 6)),                   # 1
    ("2>1 6>5 5>4 4>3", (1, 3), (2, 2)),                   # 2
    ("3>2 2>1 6>5 5>4", (1, 4), (6, 6)),                   # 3
    ("3>2 2>1 6>5 5>4", (1, 4), (4, 6)),                   # 4
    ("2>1 4>3 6>5", (1, 3, 5), (6, 6)),                    # 5
    ("2>1 4>3 6>5", (1, 3, 5), (5, 6)),                    # 6
    ("2>1 4>3 5>3 6>5", (1, 3), (6, 6)),                   # 7
    ("2>1 4>3 5>3 6>5", (1, 3), (4, 4)),                   # 8
    ("2>1 4>3 5>3 6>5", (1, 3), (2, 2)),                   # 9
    ("3>2 2>1 5>4 6>4", (1, 4), (3, 3)),                   # 10
    ("3>2 2>1 5>4 6>4", (1, 4), (6, 6)),                   # 11
    ("2>1 4>3 5>3 6>3", (1, 3), (2, 2)),                   # 12
    ("2>1 4>3 5>3 6>3", (1, 3), (6, 6)),                   # 13
    ("2>1 4>3 5>4 6>4", (1, 3), (6, 6)),                   # 14
    ("2>1 4>3 5>4 6>4", (1, 3), (2, 2)),                   # 15
    ("2>1 3>1 4>3 5>1 6>5", (1,), (6, 6)),                 # 16
    ("2>1 3>1 4>3 5>1 6>5", (1,), (2, 2)),                 # 17
    ("2>1 3>1 4>1 5>4 6>5", (1,), (3, 3)),                 # 18
    ("3>2 2>1 6>4 6>5", (1, 4, 5), (6, 6)),                # 19
    ("3>1 3>2 5>4 6>4", (1, 2, 4), (3, 3)),                # 20
    ("3>1 3>2 6>4 6>5", (1, 2, 4, 5), (3, 3)),             # 21
    ("2>1 6>3 6>4 6>5", (1, 3, 4, 5), (6, 6)),             # 22
    ("3>2 6>4 6>5", (1, 2, 4, 5), (6, 6)),                 # 23
    ("6>3 6>4 6>5", (1, 2, 3, 4, 5), (6, 6)),              # 24
    ("6>4 6>5", (1, 2, 3, 4, 5), (6, 6)),                  # 25
    ("3>2 5>4 6>4", (1, 2, 4), (6, 6)),                    # 26
    ("3>2 5>4 6>4", (1, 2, 4), (3, 3)),                    # 27
    ("2>1 5>4 4>3", (1, 3, 6), (5, 5)),                    # 28
    ("4>3 6>5", (1, 2, 3, 5), (6, 6)),                     # 29
    ("5>4 4>3", (1, 2, 3, 6), (5, 5)),                     # 30
    ("6>5", (1, 2, 3, 4, 5), (6, 6)),                      # 31
    ("", (1, 2, 3, 4, 5, 6), (6, 6)),                      # 32
)
#: algorithms (1-based) whose feedback Dexed applies at a quarter strength
REDUCED_FEEDBACK_ALGORITHMS = (4, 6, 32)


class Algorithm:
    """One DX7 algorithm, 0-based operator indices (index ``i`` is operator ``i + 1``).

    Attributes:
        number: 1..32 as on the DX7's panel.
        modulators: per operator, the operators that modulate it (tuple of indices).
        carriers: operators summed into the output.
        feedback: ``(source, target)``: the source's output feeds the target's phase with a
            one-sample delay (``source == target`` for a self-loop).
        loop: the operators of the feedback loop in the order they are computed each sample
            (from the target down to the source).
        reduced_feedback: whether the feedback runs at a quarter strength.
    """

    def __init__(self, number: int):
        edges, carriers, (fb_src, fb_dst) = _ALGORITHMS[number - 1]
        mods: list[list[int]] = [[] for _ in range(6)]
        for edge in edges.split():
            src, dst = (int(x) - 1 for x in edge.split(">"))
            mods[dst].append(src)
        self.number = number
        self.modulators = tuple(tuple(sorted(m)) for m in mods)
        self.carriers = tuple(c - 1 for c in carriers)
        self.feedback = (fb_src - 1, fb_dst - 1)
        self.reduced_feedback = number in REDUCED_FEEDBACK_ALGORITHMS
        loop = [fb_dst - 1]
        while loop[-1] != fb_src - 1:       # walk down the chain target -> ... -> source
            nxt = [k for k in range(6) if loop[-1] in self.modulators[k]]
            loop.append(nxt[0])
        self.loop = tuple(loop)

    def modulation_matrix(self) -> list[list[int]]:
        """``m[target][source] = 1`` where ``source`` modulates ``target`` (feedback excluded)."""
        return [[1 if j in self.modulators[k] else 0 for j in range(6)] for k in range(6)]


ALGORITHMS = tuple(Algorithm(n) for n in range(1, 33))
