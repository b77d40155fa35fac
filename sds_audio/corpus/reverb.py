"""Artificial room reverb for the corpus (our own, so "reverberant" captions are true).

The impulse response is a few early reflections followed by a diffuse tail of
Gaussian noise with an exponential decay per octave-ish band: high bands decay
faster than low ones, as in real rooms (air and wall absorption rise with
frequency). Band splitting uses ``scipy.signal`` Butterworth filters and the
convolution ``scipy.signal.fftconvolve``.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

# (low edge Hz, high edge Hz, RT60 multiplier, initial amplitude) of the decay bands: the tail is
# darker than white noise and its highs die first.
DECAY_BANDS = ((0.0, 500.0, 1.15, 1.0), (500.0, 2000.0, 1.0, 0.9), (2000.0, 5000.0, 0.75, 0.5),
               (5000.0, None, 0.5, 0.25))


def reverb_ir(rt60_s: float, sample_rate: int, rng: np.random.Generator, predelay_s: float = 0.01,
              n_early: int = 8) -> np.ndarray:
    """A room impulse response ``(T,)`` float64 with unit energy.

    Args:
        rt60_s: time for the 500-2000 Hz band to decay by 60 dB.
        predelay_s: delay of the first reflection.
        n_early: number of discrete early reflections within 60 ms after it.
    """
    n = int(min(1.25 * rt60_s, 3.5) * sample_rate)
    t = np.arange(n) / sample_rate
    nyquist = sample_rate / 2
    tail = np.zeros(n)
    for lo, hi, mult, gain in DECAY_BANDS:
        noise = rng.standard_normal(n)
        if lo <= 0:
            sos = signal.butter(4, hi / nyquist, btype="lowpass", output="sos")
        elif hi is None or hi >= nyquist:
            sos = signal.butter(4, lo / nyquist, btype="highpass", output="sos")
        else:
            sos = signal.butter(4, [lo / nyquist, hi / nyquist], btype="bandpass", output="sos")
        tail += gain * signal.sosfilt(sos, noise) * np.exp(-6.9078 * t / (rt60_s * mult))
    start = int(predelay_s * sample_rate)
    build_up = np.clip((t - predelay_s) / 0.02, 0.0, 1.0)
    tail *= build_up
    ir = 0.35 * tail / np.sqrt(np.sum(tail ** 2) + 1e-12)
    times = start + (rng.uniform(0.0, 0.06, n_early) * sample_rate).astype(int)
    gains = rng.uniform(0.2, 0.6, n_early) * np.exp(-6.9078 * (times - start) / sample_rate / rt60_s)
    np.add.at(ir, np.clip(times, 0, n - 1), gains * rng.choice([-1.0, 1.0], n_early))
    return ir / np.sqrt(np.sum(ir ** 2))


def apply_reverb(dry: np.ndarray, ir: np.ndarray, drr_db: float) -> np.ndarray:
    """Dry signal plus its reverberation at a direct-to-reverberant energy ratio of ``drr_db``.

    Returns ``(len(dry) + len(ir) - 1,)`` float64 (the tail is kept; trim it later).
    """
    dry = np.asarray(dry, dtype=np.float64)
    wet = signal.fftconvolve(dry, ir)
    e_dry = float(np.sum(dry ** 2))
    e_wet = float(np.sum(wet ** 2)) + 1e-20
    wet *= np.sqrt(e_dry / e_wet * 10 ** (-drr_db / 10))
    out = wet
    out[:dry.shape[0]] += dry
    return out
