"""Procedural struck objects: modal synthesis of pots, pans, bells, planks, bottles, mugs.

Written for the corpus independently of ``sds_audio.synths`` (so the SDS
benchmarks, which fit those synths, are not scored on their own sounds).

An object is a set of damped sinusoidal modes. The mode frequencies follow
textbook ratio sets for the object's shape, jittered per clip:

- ``bar``: free-free beam, ratios ``(beta_n / beta_1)^2`` with
  ``beta = 4.730, 7.853, 10.996, ...`` (planks, pipes);
- ``plate_circular``: free circular plate (Chladni) modes (pans, plates);
- ``plate_rect``: simply supported rectangular plate, ``(m / a)^2 + n^2`` (doors);
- ``shell``: ring / cylindrical-shell bending modes ``n (n^2 - 1) / sqrt(n^2 + 1)``
  (glasses, mugs); ``shell_pot`` and ``shell_bottle`` add axial and base modes;
- ``bell``: church-bell partials (hum, prime, tierce, quint, nominal, ...).

Damping comes from the material's quality factor ``Q`` (wood and plastic
~10-100, ceramic hundreds, metal and glass thousands), with higher modes
damped more (``Q_k = Q (f_1 / f_k)^alpha``). Round objects split each mode into
a slightly detuned pair (beating). The striker sets the contact time ``T_c`` of
a half-sine force pulse, whose spectrum weights the modes (a soft mallet
excites only low modes, a metal spoon all of them), plus a short contact-noise
click. Harder (louder) strikes shorten the contact.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

# Contact time range (s) of each striker.
STRIKER_CONTACT_S = {
    "wooden spoon": (0.7e-3, 1.4e-3), "metal spoon": (0.12e-3, 0.3e-3), "drumstick": (0.35e-3, 0.7e-3),
    "rubber mallet": (2.5e-3, 5e-3), "metal rod": (0.1e-3, 0.25e-3), "wooden stick": (0.45e-3, 0.9e-3),
    "hammer": (0.25e-3, 0.5e-3), "knuckles": (1.2e-3, 2.5e-3), "knuckle": (1.2e-3, 2.5e-3),
    "fist": (3e-3, 6e-3), "pencil": (0.25e-3, 0.5e-3), "knife": (0.12e-3, 0.25e-3),
    "fingernail": (0.2e-3, 0.45e-3), "fork": (0.12e-3, 0.3e-3), "chopstick": (0.35e-3, 0.7e-3),
    "hand": (3e-3, 6e-3), "finger": (1.5e-3, 3e-3),
}

# How fast Q falls with mode frequency, per material.
MATERIAL_ALPHA = {"metal": 0.35, "glass": 0.25, "ceramic": 0.35, "wood": 0.15, "plastic": 0.05}
# Contact-noise level relative to the modal sound's peak, per material.
MATERIAL_NOISE = {"metal": (0.02, 0.08), "glass": (0.02, 0.06), "ceramic": (0.04, 0.12),
                  "wood": (0.1, 0.35), "plastic": (0.1, 0.3)}
MAX_DECAY_S = 1.2           # longest per-mode 1/e decay time
MAX_DURATION_S = 4.0


def bar_ratios(n: int = 8) -> np.ndarray:
    """Free-free beam mode ratios ``(beta_n / beta_1)^2``."""
    beta = np.array([4.7300, 7.8532, 10.9956, 14.1372])
    beta = np.concatenate([beta, (2 * np.arange(5, n + 1) + 1) * np.pi / 2])[:n]
    return (beta / beta[0]) ** 2


def plate_circular_ratios() -> np.ndarray:
    """Free circular plate mode ratios (relative to the (2,0) mode)."""
    return np.array([1.0, 1.73, 2.33, 3.91, 4.11, 6.30, 6.96, 7.34, 8.89, 10.2, 11.9, 13.0])


def plate_rect_ratios(aspect: float, n: int = 14) -> np.ndarray:
    """Simply supported rectangular plate, side ratio ``aspect``: sorted ``(m/a)^2 + k^2`` normalised."""
    m, k = np.meshgrid(np.arange(1, 8), np.arange(1, 8))
    f = np.sort(((m / aspect) ** 2 + k ** 2).ravel())
    return (f / f[0])[:n]


def shell_ratios(n: int = 7) -> np.ndarray:
    """Ring / cylindrical shell bending modes ``n (n^2 - 1) / sqrt(n^2 + 1)``, n = 2.., normalised."""
    order = np.arange(2, n + 2, dtype=np.float64)
    f = order * (order ** 2 - 1) / np.sqrt(order ** 2 + 1)
    return f / f[0]


def bell_ratios() -> np.ndarray:
    """Church-bell partials relative to the hum: hum, prime, tierce, quint, nominal and above."""
    return np.array([1.0, 2.0, 2.37, 3.0, 4.0, 5.02, 5.33, 6.0, 8.0, 10.7])


def mode_set(name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(ratios, relative amplitude)`` of a mode-set name, with per-object variation."""
    if name == "bar":
        r = bar_ratios()
        w = np.ones_like(r)
    elif name == "plate_circular":
        r = plate_circular_ratios()
        w = np.ones_like(r)
    elif name == "plate_rect":
        r = plate_rect_ratios(rng.uniform(1.6, 2.6))
        w = np.ones_like(r)
    elif name == "shell":
        r = shell_ratios()
        w = np.ones_like(r)
    elif name == "shell_pot":
        shell = shell_ratios(6)
        axial = shell * rng.uniform(1.3, 1.8)
        base = np.array([1.0, 2.08, 3.41, 3.89, 5.0, 5.95]) * rng.uniform(0.7, 1.6)
        r = np.concatenate([shell, axial, base])
        w = np.concatenate([np.ones(6), np.full(6, rng.uniform(0.3, 0.7)), np.full(6, rng.uniform(0.3, 0.8))])
    elif name == "shell_bottle":
        shell = shell_ratios(6)
        axial = shell * rng.uniform(1.5, 2.2)
        r = np.concatenate([shell, axial])
        w = np.concatenate([np.ones(6), np.full(6, rng.uniform(0.2, 0.6))])
    elif name == "bell":
        r = bell_ratios()
        w = np.array([0.5, 0.8, 0.9, 0.6, 1.0, 0.6, 0.5, 0.4, 0.3, 0.2])
    else:
        raise ValueError(f"unknown mode set {name!r}")
    jitter = np.exp(rng.normal(0.0, 0.02, r.shape))
    jitter[0] = 1.0
    r = r * jitter
    order = np.argsort(r)
    r, w = r[order], w[order]
    return r / r[0], w


def half_sine_spectrum(freq_hz: np.ndarray, contact_s: float) -> np.ndarray:
    """``|P(f)| / |P(0)|`` of a half-sine force pulse of duration ``contact_s``."""
    x = 2.0 * freq_hz * contact_s
    num = np.abs(np.cos(np.pi * freq_hz * contact_s))
    den = np.abs(1.0 - x ** 2)
    near = den < 1e-6
    out = np.where(near, np.pi / 4, num / np.where(near, 1.0, den))
    return np.maximum(out, 1e-4)


def damped_modes(freq_hz: np.ndarray, decay_s: np.ndarray, amp: np.ndarray, phase: np.ndarray,
                 n_samples: int, sample_rate: int) -> np.ndarray:
    """Sum of ``amp_k exp(-t / decay_k) sin(2 pi f_k t + phase_k)``, ``(n_samples,)`` float64."""
    t = np.arange(n_samples) / sample_rate
    out = np.zeros(n_samples)
    for f, d, a, p in zip(freq_hz, decay_s, amp, phase):
        n_k = min(n_samples, int(7.0 * d * sample_rate) + 1)
        out[:n_k] += a * np.exp(-t[:n_k] / d) * np.sin(2 * np.pi * f * t[:n_k] + p)
    return out


def contact_noise(contact_s: float, n_samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A short band-limited noise click whose brightness follows the contact time, unit peak."""
    n = min(n_samples, int(0.03 * sample_rate))
    t = np.arange(n) / sample_rate
    decay = max(contact_s * 1.5, 0.4e-3) * rng.uniform(0.8, 2.0)
    click = rng.standard_normal(n) * np.exp(-t / decay)
    centre = float(np.clip(0.6 / contact_s, 600.0, 0.4 * sample_rate))
    lo, hi = centre / 2.5, min(centre * 2.5, 0.45 * sample_rate)
    sos = signal.butter(2, [lo / (sample_rate / 2), hi / (sample_rate / 2)], btype="bandpass", output="sos")
    click = signal.sosfilt(sos, click)
    out = np.zeros(n_samples)
    out[:n] = click / (np.abs(click).max() + 1e-12)
    return out


def struck_object(*, modes: str, material: str, f0_hz: float, q: float, striker: str, force: float,
                  split_modes: bool, n_hits: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Render one struck-object clip ``(T,)`` float64 (unnormalised).

    Args:
        modes: mode-set name (see module docstring).
        material: ``metal, glass, ceramic, wood, plastic`` (damping slope and click level).
        f0_hz: lowest mode frequency.
        q: quality factor of the lowest mode.
        striker: a key of ``STRIKER_CONTACT_S``.
        force: strike strength in [0, 1] (shorter contact when harder).
        split_modes: add a detuned partner to every mode (round objects).
        n_hits: number of strikes (knocks), 0.14-0.3 s apart.
    """
    ratios, weights = mode_set(modes, rng)
    freq = f0_hz * ratios
    keep = freq < 0.45 * sample_rate
    freq, weights = freq[keep], weights[keep]
    q_k = q * (freq[0] / freq) ** MATERIAL_ALPHA[material]
    decay = np.minimum(q_k / (np.pi * freq), MAX_DECAY_S)
    tilt = (freq / freq[0]) ** (-rng.uniform(0.2, 0.7))
    amp = weights * tilt * np.exp(rng.normal(0.0, 0.5, freq.shape))
    if split_modes:
        detune = 1.0 + rng.uniform(0.0005, 0.006, freq.shape)
        partner = rng.uniform(0.2, 0.9, freq.shape)
        freq = np.concatenate([freq, freq * detune])
        decay = np.concatenate([decay, decay * rng.uniform(0.8, 1.2, decay.shape)])
        amp = np.concatenate([amp, amp * partner])
    lo, hi = STRIKER_CONTACT_S[striker]
    onsets = [0.0]
    for _ in range(n_hits - 1):
        onsets.append(onsets[-1] + rng.uniform(0.14, 0.3))
    ring_s = min(7.0 * float(decay.max()) + onsets[-1] + 0.05, MAX_DURATION_S + 0.2)
    n_samples = int(ring_s * sample_rate)
    out = np.zeros(n_samples)
    noise_lo, noise_hi = MATERIAL_NOISE[material]
    for k, onset in enumerate(onsets):
        contact = rng.uniform(lo, hi) * (1.3 - 0.5 * force)
        hit_gain = 1.0 if k == 0 else rng.uniform(0.7, 1.0)
        start = int(onset * sample_rate)
        n = n_samples - start
        body = damped_modes(freq, decay, amp * half_sine_spectrum(freq, contact),
                            rng.uniform(0, 2 * np.pi, freq.shape), n, sample_rate)
        body /= np.abs(body).max() + 1e-12
        click = contact_noise(contact, n, sample_rate, rng) * rng.uniform(noise_lo, noise_hi) * (0.6 + 0.8 * force)
        # the force pulse has finite duration: smooth the onset over the contact time
        ramp = np.minimum(np.arange(n) / max(contact * sample_rate, 1.0), 1.0)
        out[start:] += hit_gain * (body * ramp + click)
    return out
