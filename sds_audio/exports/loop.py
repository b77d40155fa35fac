"""How a rendered note plays in a sampler: sustained (looped) or one-shot, and where it loops.

Pure NumPy functions on audio arrays ``(channels, samples)`` (float, nominal [-1, 1]);
:mod:`sds_audio.exports.sfz` calls them for each sample it writes.

* :func:`frame_levels_db` is the level envelope: RMS over all channels in frames of
  ``frame_s`` seconds, in dB relative to the loudest frame.
* :func:`analyse_envelope` reads that envelope: a note *sustains* when its end is
  still loud (above ``-SUSTAIN_FLOOR_DB`` re its peak) and steady (its level over the
  last quarter changes by less than ``STEADY_DB_PER_S``); otherwise it is a decaying,
  percussive note, played one-shot. It also measures the note's decay time (used as
  the sampler's release) and its decay rate.
* :func:`release_t60_s` measures the release of a note rendered with a note-off (T60, taken
  from the fall to a floor where the release stops short of 60 dB).
* :func:`find_loop` picks a loop in the steady tail: the loop ends at the end of the
  audio and starts where the ``match_s`` seconds just before it look most like the
  ``match_s`` seconds before the end (least normalised squared difference, computed
  for every candidate start at once by FFT correlation, :func:`scipy.signal.correlate`).
  For a periodic tone that is a whole number of periods.
* :func:`crossfade_loop` then blends the audio just before the loop end into the audio
  just before the loop start, so that playing ``loop_end -> loop_start`` continues
  exactly as the audio continued into ``loop_start``: the seam has no step, whatever
  is left of the mismatch (inharmonic partials, slow drifts) is spread over the fade.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import correlate

#: a note sustains when its final level is above -SUSTAIN_FLOOR_DB re its peak ...
SUSTAIN_FLOOR_DB = 40.0
#: ... and its level over the last quarter changes by less than this (dB per second)
STEADY_DB_PER_S = 6.0
#: one-shot samples end where the level has fallen this far below the peak
ONE_SHOT_FLOOR_DB = 60.0
#: decay time measured to within this many dB of the held level (sustained notes)
DECAY_MARGIN_DB = 1.0
#: levels below this (re the peak) count as silence in fits
_SILENCE_DB = -120.0


@dataclass(frozen=True)
class EnvelopeShape:
    """What :func:`analyse_envelope` reads from a note's level envelope.

    Attributes:
        sustained: the note holds a steady level at its end (loop it) rather than dying away.
        end_db: level over the last tenth of the note, dB re its loudest frame (<= 0).
        slope_db_per_s: least-squares slope of the level over the last quarter (dB/s;
            negative while decaying, positive while still rising).
        decay_s: sustained notes: time from the peak until the level is within
            ``DECAY_MARGIN_DB`` of the held level (0 when it never falls further than that);
            decaying notes: T60, from a straight-line fit of the level (dB) from the peak
            down to -60 dB (inf when it does not fall).
        peak_s: time of the loudest frame (s).
    """

    sustained: bool
    end_db: float
    slope_db_per_s: float
    decay_s: float
    peak_s: float

    def seconds_to_floor(self) -> float:
        """Decaying notes: seconds past the end until the level is ``ONE_SHOT_FLOOR_DB`` below
        the peak at the end's decay rate (0 when already there, inf when not decaying)."""
        if self.end_db <= -ONE_SHOT_FLOOR_DB:
            return 0.0
        if self.slope_db_per_s >= 0:
            return float("inf")
        return (ONE_SHOT_FLOOR_DB + self.end_db) / -self.slope_db_per_s


def frame_levels_db(audio: np.ndarray, sample_rate: int, frame_s: float = 0.01) -> np.ndarray:
    """Level envelope ``(n_frames,)`` in dB re the loudest frame (silence: ``_SILENCE_DB``).

    Args:
        audio: ``(channels, samples)``.
        frame_s: frame length in seconds (frames do not overlap; a last partial frame is dropped
            unless it is the only one).
    """
    frame = max(1, int(round(frame_s * sample_rate)))
    n_frames = max(1, audio.shape[-1] // frame)
    x = np.asarray(audio, dtype=np.float64)[:, :n_frames * frame]
    power = (x.reshape(x.shape[0], n_frames, -1) ** 2).mean(axis=(0, 2))
    peak = power.max()
    if peak <= 0:
        return np.full(n_frames, _SILENCE_DB)
    return np.maximum(10.0 * np.log10(np.maximum(power / peak, 1e-30)), _SILENCE_DB)


def analyse_envelope(audio: np.ndarray, sample_rate: int, frame_s: float = 0.01) -> EnvelopeShape:
    """Classify a note as sustained or decaying and measure its decay (see :class:`EnvelopeShape`).

    Args:
        audio: ``(channels, samples)``, the note from its onset.
    """
    levels = frame_levels_db(audio, sample_rate, frame_s)
    n = levels.size
    t = (np.arange(n) + 0.5) * frame_s
    tenth = max(1, n // 10)
    end_power = np.mean(10.0 ** (levels[-tenth:] / 10.0))
    end_db = float(max(10.0 * np.log10(max(end_power, 1e-30)), _SILENCE_DB))
    quarter = slice(n - max(2, n // 4), n) if n >= 2 else slice(0, n)
    tq, lq = t[quarter], levels[quarter]
    audible = lq > _SILENCE_DB
    slope = float(np.polyfit(tq[audible], lq[audible], 1)[0]) if audible.sum() >= 2 else 0.0
    peak = int(np.argmax(levels))
    sustained = end_db > -SUSTAIN_FLOOR_DB and abs(slope) < STEADY_DB_PER_S
    if sustained:
        above = np.nonzero(levels[peak:] > end_db + DECAY_MARGIN_DB)[0]
        decay_s = float(above[-1] + 1) * frame_s if above.size else 0.0
    else:
        decay_s = _t60_from(levels[peak:], frame_s)
    return EnvelopeShape(sustained=sustained, end_db=end_db, slope_db_per_s=slope, decay_s=decay_s,
                         peak_s=float(t[peak]))


def _t60_from(levels_db: np.ndarray, frame_s: float) -> float:
    """T60 (s) of a fall: a straight-line fit of ``levels_db`` (dB, one value per frame) from its
    first frame until it is 60 dB below that frame (or its end); inf when it does not fall."""
    below = np.nonzero(levels_db <= levels_db[0] - 60.0)[0]
    fall = levels_db[:below[0]] if below.size else levels_db
    if fall.size < 2:                                           # gone within a frame, or a single frame
        return float(below[0]) * frame_s if below.size else float("inf")
    rate = float(np.polyfit(np.arange(fall.size) * frame_s, fall, 1)[0])
    return 60.0 / -rate if rate < 0 else float("inf")


def release_t60_s(audio: np.ndarray, sample_rate: int, note_off_s: float, frame_s: float = 0.01) -> float:
    """T60 (s) of a note's release, from the level (dB) at ``note_off_s`` on.

    The time the level takes to fall ``D`` dB below its value at the note-off, scaled to 60 dB
    (``60 * t / D``, the fall taken as linear in dB). ``D`` is 60 dB, or less where the release
    settles on a floor first (an engine's noise floor): 3 dB short of that floor.

    Args:
        audio: ``(channels, samples)``, the note from its onset, released at ``note_off_s``.

    Returns:
        inf when the level does not fall at least 6 dB after the note-off, or the note is
        silent by then.
    """
    levels = frame_levels_db(audio, sample_rate, frame_s)
    first = int(note_off_s / frame_s)                           # the frame holding the note-off
    after = levels[first:]
    if after.size < 2 or after[0] <= _SILENCE_DB:
        return float("inf")
    floor = float(np.median(after[-max(1, after.size // 10):]))
    drop = min(60.0, after[0] - floor - 3.0)
    if drop < 6.0:
        return float("inf")
    crossed = np.nonzero(after <= after[0] - drop)[0]
    return 60.0 * float(crossed[0]) * frame_s / drop


def find_loop(audio: np.ndarray, sample_rate: int, *, min_loop_s: float = 0.1, max_loop_s: float = 0.5,
              match_s: float = 0.03, lead_s: float = 0.05) -> tuple[int, int]:
    """Loop points ``(start, end)`` (samples, ``end`` exclusive, ``end == audio.shape[-1]``).

    The loop ``[start, end)`` is between ``min_loop_s`` and ``max_loop_s`` long (shortened to
    fit: ``start`` stays at least ``match_s + lead_s`` seconds into the audio, the room the
    match window and :func:`crossfade_loop` need before it). Among those starts, the one whose
    preceding ``match_s`` seconds best match the last ``match_s`` seconds (least squared
    difference over all channels, divided by the two windows' energy) wins; ties go to the
    longest loop.

    Raises:
        ValueError: audio shorter than ``2 * match_s + lead_s + min_loop_s`` seconds.
    """
    x = np.asarray(audio, dtype=np.float64)
    n = x.shape[-1]
    w = max(1, int(round(match_s * sample_rate)))
    lead = int(round(lead_s * sample_rate))
    min_len = max(1, int(round(min_loop_s * sample_rate)))
    max_len = min(int(round(max_loop_s * sample_rate)), n - w - lead)
    if max_len < min_len:
        raise ValueError(f"{n} samples are too short for a loop of at least {min_loop_s} s "
                         f"with a {match_s} s match window")
    s_lo, s_hi = n - max_len, n - min_len                       # candidate loop starts
    target = x[:, n - w:]                                       # (C, w) the end of the loop
    span = x[:, s_lo - w:s_hi]                                  # windows x[s-w:s] for s in [s_lo, s_hi]
    cross = sum(correlate(span[c], target[c], mode="valid", method="fft") for c in range(x.shape[0]))
    energy_cum = np.concatenate([[0.0], np.cumsum((span ** 2).sum(axis=0))])
    energy = energy_cum[w:] - energy_cum[:-w]                   # sum of x[s-w:s]**2 over channels
    target_energy = float((target ** 2).sum())
    distance = (energy + target_energy - 2.0 * cross) / np.maximum(energy + target_energy, 1e-30)
    best = int(np.argmin(distance))                             # first minimum: the earliest start
    return s_lo + best, n


def crossfade_loop(audio: np.ndarray, start: int, end: int, fade: int) -> np.ndarray:
    """Bake a crossfade into the last ``fade`` samples of the loop ``[start, end)``.

    Returns a copy ``y`` with ``y[i] = (1 - g) x[i] + g x[i - (end - start)]`` for
    ``i in [end - fade, end)``, ``g`` rising linearly from ``1/fade`` to 1, so ``y[end - 1]
    == x[start - 1]``: looping from ``end - 1`` to ``start`` continues the audio exactly as
    ``x[start - 1] -> x[start]`` did. Samples outside the fade are unchanged.

    Raises:
        ValueError: ``fade`` longer than the loop or than the audio before ``start``.
    """
    length = end - start
    if not (0 < fade <= length and fade <= start and end <= audio.shape[-1]):
        raise ValueError(f"crossfade of {fade} samples does not fit loop [{start}, {end}) "
                         f"of audio with {audio.shape[-1]} samples")
    y = np.array(audio, dtype=np.float64, copy=True)
    gain = np.arange(1, fade + 1, dtype=np.float64) / fade
    y[:, end - fade:end] = (1.0 - gain) * y[:, end - fade:end] + gain * y[:, start - fade:start]
    return y
