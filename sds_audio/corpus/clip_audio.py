"""Finishing a rendered clip: trim silence, fade, set the level, reject broken renders.

Pure numpy functions on 1-D float arrays ``(T,)`` at one sample rate. The
level is a peak target in dBFS chosen by the builder from the clip's dynamics
(soft clips are quieter than loud ones, so "soft" / "loud" captions are true
of the level as well as of the timbre).
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import maximum_filter1d

MIN_DURATION_S = 0.5
MAX_DURATION_S = 4.0


def envelope(audio: np.ndarray, sample_rate: int, window_s: float = 0.01) -> np.ndarray:
    """Running peak of ``|audio|`` over ``window_s`` (centered), ``(T,)``."""
    size = max(1, int(window_s * sample_rate))
    return maximum_filter1d(np.abs(audio), size=size, mode="constant")


def is_broken(audio: np.ndarray, sample_rate: int, min_peak: float = 1e-4, min_active_s: float = 0.03) -> str | None:
    """Why a raw render is unusable, or ``None`` when it is fine.

    Rejects non-finite samples, near silence (peak below ``min_peak``), and
    renders whose sound (envelope above -40 dB of the peak) lasts less than
    ``min_active_s``.
    """
    if audio.size == 0:
        return "empty"
    if not np.isfinite(audio).all():
        return "non-finite samples"
    peak = float(np.abs(audio).max())
    if peak < min_peak:
        return f"silent (peak {peak:.2e})"
    env = envelope(audio, sample_rate)
    active = float((env > peak * 1e-2).sum()) / sample_rate
    if active < min_active_s:
        return f"sound lasts only {active * 1000:.0f} ms"
    return None


def trim(audio: np.ndarray, sample_rate: int, *, lead: bool = True, floor_db: float = -60.0,
         onset_db: float = -40.0, preroll_s: float = 0.005, min_s: float = 1.0, max_s: float = MAX_DURATION_S,
         fade_s: float = 0.05) -> np.ndarray:
    """Cut leading silence (optional) and the tail below ``floor_db``; clamp the length.

    Args:
        audio: ``(T,)`` float.
        lead: cut everything before the onset (first sample within
            ``onset_db`` of the peak) minus ``preroll_s``.
        floor_db: the clip ends where the envelope last exceeds peak * 10^(floor_db/20).
        min_s: shorter results are zero-padded to this length.
        max_s: longer results are cut, with a ``fade_s`` raised-cosine fade-out.

    Returns:
        ``(T',)`` float32 with ``min_s * sr <= T' <= max_s * sr``.
    """
    audio = np.asarray(audio, dtype=np.float64)
    peak = float(np.abs(audio).max())
    env = envelope(audio, sample_rate)
    if lead:
        onset = int(np.argmax(env > peak * 10 ** (onset_db / 20)))
        audio = audio[max(0, onset - int(preroll_s * sample_rate)):]
        env = envelope(audio, sample_rate)
    above = np.nonzero(env > peak * 10 ** (floor_db / 20))[0]
    end = int(above[-1]) + 1 if above.size else audio.shape[0]
    n_max = int(round(max_s * sample_rate))
    if end > n_max:
        audio = fade_out(audio[:n_max], sample_rate, fade_s)
    else:
        audio = fade_out(audio[:end], sample_rate, min(fade_s, 0.01))
    n_min = int(round(min_s * sample_rate))
    if audio.shape[0] < n_min:
        audio = np.concatenate([audio, np.zeros(n_min - audio.shape[0])])
    return audio.astype(np.float32)


def fade_out(audio: np.ndarray, sample_rate: int, fade_s: float) -> np.ndarray:
    """Raised-cosine fade over the last ``fade_s`` seconds (a copy)."""
    audio = np.array(audio, dtype=np.float64)
    n = min(audio.shape[0], max(1, int(fade_s * sample_rate)))
    audio[-n:] *= 0.5 * (1.0 + np.cos(np.linspace(0.0, np.pi, n)))
    return audio


def fade_in(audio: np.ndarray, sample_rate: int, fade_s: float) -> np.ndarray:
    """Raised-cosine fade over the first ``fade_s`` seconds (a copy)."""
    audio = np.array(audio, dtype=np.float64)
    n = min(audio.shape[0], max(1, int(fade_s * sample_rate)))
    audio[:n] *= 0.5 * (1.0 - np.cos(np.linspace(0.0, np.pi, n)))
    return audio


def set_peak(audio: np.ndarray, peak_dbfs: float) -> np.ndarray:
    """Scale so that ``max |audio| = 10^(peak_dbfs / 20)``; ``(T,)`` float32."""
    peak = float(np.abs(audio).max())
    return (np.asarray(audio, dtype=np.float64) * (10 ** (peak_dbfs / 20) / peak)).astype(np.float32)


def to_pcm16(audio: np.ndarray) -> np.ndarray:
    """Round float audio in [-1, 1] to int16 (no dither: bit-identical across runs)."""
    return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
