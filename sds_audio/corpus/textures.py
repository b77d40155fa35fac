"""Procedural environmental textures: wind, rain, engine hum, a car passing by, fire, mains hum.

Written for the corpus with numpy / scipy only (independent of
``sds_audio.synths``). Every generator takes ``(duration_s, sample_rate, rng)``
plus its own attributes and returns ``(T,)`` float64, unnormalised.

- wind: noise through a bank of band-pass filters whose weights follow a
  slowly varying gust envelope (the spectral centre rises with the gusts),
  plus an optional whistling resonance;
- rain: a Poisson stream of raindrops (a click and a rising-pitch bubble
  resonance each, Minnaert-like 1-5 kHz) over a high-passed noise bed;
- engine: a firing-frequency harmonic series with cycle-to-cycle jitter and
  combustion noise modulated by the firing phase, through a body low-pass;
- car passing by: an engine plus tyre noise moving on a straight line past
  the listener; the received signal is the source at the retarded time
  ``t - r(t) / c`` (Doppler shift) scaled by ``1 / r`` (level sweep), darker
  when far (air absorption);
- fire: a low rumble and hiss bed plus heavy-tailed random crackles;
- mains hum: 50 / 60 Hz and harmonics, optionally buzzing (clipped).
"""

from __future__ import annotations

import numpy as np
from scipy import signal

SPEED_OF_SOUND_M_S = 343.0


def _sos(kind: str, freq_hz, sample_rate: int, order: int = 2) -> np.ndarray:
    nyq = sample_rate / 2
    f = np.clip(np.atleast_1d(np.asarray(freq_hz, dtype=np.float64)) / nyq, 1e-4, 0.999)
    return signal.butter(order, f if f.size > 1 else f[0], btype=kind, output="sos")


def smooth_random(n_samples: int, sample_rate: int, rate_hz: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth random curve in about [-1, 1] varying at ``rate_hz`` (low-passed noise)."""
    n_ctrl = max(4, int(n_samples / sample_rate * rate_hz) + 4)
    ctrl = rng.standard_normal(n_ctrl)
    x = np.linspace(0, n_ctrl - 1, n_samples)
    curve = np.interp(x, np.arange(n_ctrl), ctrl)
    curve = signal.sosfiltfilt(_sos("lowpass", max(rate_hz, 0.05), sample_rate, 1), curve)
    return curve / (np.abs(curve).max() + 1e-12)


def pink_noise(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Approximately 1/f noise (Paul Kellet's three-pole filter coefficients), unit peak."""
    white = rng.standard_normal(n_samples)
    b = [0.049922035, -0.095993537, 0.050612699, -0.004408786]
    a = [1.0, -2.494956002, 2.017265875, -0.522189400]
    pink = signal.lfilter(b, a, white)
    return pink / (np.abs(pink).max() + 1e-12)


def wind(duration_s: float, sample_rate: int, rng: np.random.Generator, gusty: bool) -> np.ndarray:
    """Wind: gusty (deep, fast level and colour changes) or steady (gentle drift)."""
    n = int(duration_s * sample_rate)
    gust = 0.5 + 0.5 * smooth_random(n, sample_rate, rng.uniform(0.6, 1.5) if gusty else 0.3, rng)
    depth = rng.uniform(0.7, 0.95) if gusty else rng.uniform(0.1, 0.3)
    level = (1.0 - depth) + depth * gust
    centre_hz = rng.uniform(250.0, 700.0) * (0.6 + 0.9 * gust)
    noise = pink_noise(n, rng)
    bands = np.geomspace(120.0, 3000.0, 8)
    out = np.zeros(n)
    for fc in bands:
        band = signal.sosfilt(_sos("bandpass", [fc / 1.4, fc * 1.4], sample_rate), noise)
        weight = np.exp(-0.5 * (np.log(centre_hz / fc) / 0.5) ** 2)
        out += band * weight
    if rng.random() < 0.4:   # whistling around an edge
        f_whistle = rng.uniform(500.0, 1400.0)
        whistle = signal.sosfilt(_sos("bandpass", [f_whistle / 1.03, f_whistle * 1.03], sample_rate),
                                 rng.standard_normal(n))
        out += 0.4 * whistle / (np.abs(whistle).max() + 1e-12) * np.abs(out).max() * gust ** 2
    return out * level


def rain(duration_s: float, sample_rate: int, rng: np.random.Generator, heavy: bool) -> np.ndarray:
    """Rain: light (sparse audible drops) or heavy (dense drops, loud noise bed)."""
    n = int(duration_s * sample_rate)
    rate = rng.uniform(700.0, 1600.0) if heavy else rng.uniform(60.0, 200.0)
    n_drops = rng.poisson(rate * duration_s)
    kernel_n = int(0.025 * sample_rate)
    t = np.arange(kernel_n) / sample_rate
    out = np.zeros(n + kernel_n)
    starts = rng.integers(0, n, n_drops)
    amps = np.exp(rng.normal(0.0, 0.7, n_drops))
    # a few drop shapes, reused with random gain (vectorised adds)
    n_shapes = 24
    shapes = []
    for _ in range(n_shapes):
        f0 = rng.uniform(1200.0, 5000.0)
        chirp = f0 * (1.0 + rng.uniform(0.1, 0.6) * t / t[-1])
        phase = 2 * np.pi * np.cumsum(chirp) / sample_rate
        bubble = np.sin(phase) * np.exp(-t / rng.uniform(0.002, 0.008)) * rng.uniform(0.2, 1.0)
        click = rng.standard_normal(kernel_n) * np.exp(-t / 0.0005)
        shapes.append(bubble + 0.5 * click)
    shapes = np.array(shapes)
    which = rng.integers(0, n_shapes, n_drops)
    idx = starts[:, None] + np.arange(kernel_n)[None, :]
    np.add.at(out, idx.ravel(), (shapes[which] * amps[:, None]).ravel())
    out = out[:n]
    bed = signal.sosfilt(_sos("highpass", rng.uniform(600.0, 1500.0), sample_rate), pink_noise(n, rng))
    drop_rms = np.sqrt(np.mean(out ** 2)) + 1e-12
    bed_rms = np.sqrt(np.mean(bed ** 2)) + 1e-12
    bed_gain = (rng.uniform(0.8, 1.6) if heavy else rng.uniform(0.1, 0.3)) * drop_rms / bed_rms
    return out + bed * bed_gain


def engine_source(duration_s: float, sample_rate: int, rng: np.random.Generator, firing_hz: np.ndarray) -> np.ndarray:
    """Engine sound for a firing-frequency curve ``firing_hz`` ``(T,)``: harmonics + phase-locked noise."""
    n = firing_hz.shape[0]
    jitter = 1.0 + 0.01 * smooth_random(n, sample_rate, 20.0, rng)
    phase = 2 * np.pi * np.cumsum(firing_hz * jitter) / sample_rate
    out = np.zeros(n)
    n_harm = int(min(40, 3500.0 / float(firing_hz.max())))
    roll = rng.uniform(0.6, 1.2)
    for h in range(1, n_harm + 1):
        amp = h ** (-roll) * np.exp(rng.normal(0.0, 0.4))
        wobble = 1.0 + 0.15 * smooth_random(n, sample_rate, 8.0, rng)
        out += amp * wobble * np.sin(h * phase + rng.uniform(0, 2 * np.pi))
    puffs = (0.5 + 0.5 * np.cos(phase)) ** 4
    noise = signal.sosfilt(_sos("lowpass", rng.uniform(800.0, 2000.0), sample_rate), rng.standard_normal(n))
    out = out / (np.abs(out).max() + 1e-12) + rng.uniform(0.2, 0.6) * noise / (np.abs(noise).max() + 1e-12) * puffs
    return signal.sosfilt(_sos("lowpass", rng.uniform(900.0, 2500.0), sample_rate), out)


def engine(duration_s: float, sample_rate: int, rng: np.random.Generator, revving: bool) -> np.ndarray:
    """An engine idling (steady firing rate) or revving (rate rising then falling)."""
    n = int(duration_s * sample_rate)
    base = rng.uniform(18.0, 45.0)
    if revving:
        t = np.arange(n) / n
        peak_at = rng.uniform(0.35, 0.65)
        bump = np.exp(-0.5 * ((t - peak_at) / rng.uniform(0.12, 0.2)) ** 2)
        firing = base * (1.0 + rng.uniform(1.0, 2.0) * bump)
    else:
        firing = base * (1.0 + 0.02 * smooth_random(n, sample_rate, 1.0, rng))
    out = engine_source(duration_s, sample_rate, rng, firing)
    if revving:
        out *= 0.6 + 0.4 * firing / firing.max()
    return out


def car_pass(duration_s: float, sample_rate: int, rng: np.random.Generator, speed_m_s: float) -> np.ndarray:
    """A car driving past at ``speed_m_s`` on a straight line ``distance`` metres away."""
    n = int(duration_s * sample_rate)
    distance = rng.uniform(3.0, 10.0)
    t_closest = duration_s * rng.uniform(0.4, 0.6)
    margin = int(0.2 * sample_rate)
    n_src = n + margin
    t_src = np.arange(n_src) / sample_rate - margin / sample_rate
    firing = np.full(n_src, rng.uniform(35.0, 70.0) * (speed_m_s / 20.0) ** 0.5)
    engine_sig = engine_source(n_src / sample_rate, sample_rate, rng, firing)
    tyres = signal.sosfilt(_sos("bandpass", [rng.uniform(250.0, 500.0), rng.uniform(1500.0, 3500.0)], sample_rate),
                           pink_noise(n_src, rng))
    source = engine_sig / (np.abs(engine_sig).max() + 1e-12) + rng.uniform(0.6, 1.5) * tyres / (
        np.abs(tyres).max() + 1e-12)
    t = np.arange(n) / sample_rate
    emitted = t.copy()
    for _ in range(4):   # fixed point of tau = t - r(tau) / c
        r = np.hypot(speed_m_s * (emitted - t_closest), distance)
        emitted = t - r / SPEED_OF_SOUND_M_S
    r = np.hypot(speed_m_s * (emitted - t_closest), distance)
    received = np.interp(emitted, t_src, source)
    dark = signal.sosfilt(_sos("lowpass", 700.0, sample_rate), received)
    near = distance / r
    out = (near * received + (1.0 - near) * dark) * near
    return out


def fire(duration_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A crackling fire: rumble, hiss and random crackles."""
    n = int(duration_s * sample_rate)
    rumble = signal.sosfilt(_sos("lowpass", rng.uniform(150.0, 400.0), sample_rate), rng.standard_normal(n))
    rumble *= 0.6 + 0.4 * (0.5 + 0.5 * smooth_random(n, sample_rate, 2.0, rng))
    hiss = signal.sosfilt(_sos("highpass", 3000.0, sample_rate), rng.standard_normal(n))
    out = rumble / (np.abs(rumble).max() + 1e-12) * rng.uniform(0.1, 0.3)
    out += hiss / (np.abs(hiss).max() + 1e-12) * rng.uniform(0.01, 0.04)
    rate = rng.uniform(8.0, 35.0)
    n_crack = rng.poisson(rate * duration_s)
    for _ in range(n_crack):
        start = int(rng.integers(0, n))
        length = int(rng.uniform(0.001, 0.008) * sample_rate)
        length = max(8, min(length, n - start))
        burst = rng.standard_normal(length) * np.exp(-np.arange(length) / (length / 4))
        fc = rng.uniform(1500.0, 7000.0)
        burst = signal.sosfilt(_sos("bandpass", [fc / 2, min(fc * 2, 0.45 * sample_rate)], sample_rate), burst)
        out[start:start + length] += burst / (np.abs(burst).max() + 1e-12) * min(rng.pareto(2.0) + 0.2, 3.0) * 0.5
    return out


def mains_hum(duration_s: float, sample_rate: int, rng: np.random.Generator, mains_hz: float,
              buzzing: bool) -> np.ndarray:
    """Electrical hum at ``mains_hz`` (50 or 60) and harmonics; ``buzzing`` adds clipped-rectifier buzz."""
    n = int(duration_s * sample_rate)
    t = np.arange(n) / sample_rate
    out = np.zeros(n)
    for h in range(1, 9):
        amp = np.exp(rng.normal(0.0, 0.4)) / h ** rng.uniform(0.6, 1.2) * (1.5 if h == 2 else 1.0)
        out += amp * np.sin(2 * np.pi * mains_hz * h * t + rng.uniform(0, 2 * np.pi))
    if buzzing:
        buzz = np.clip(np.sin(2 * np.pi * 2 * mains_hz * t) * rng.uniform(3.0, 8.0), -1, 1)
        buzz = signal.sosfilt(_sos("highpass", 400.0, sample_rate), buzz)
        out = out / np.abs(out).max() + rng.uniform(0.4, 1.0) * buzz / (np.abs(buzz).max() + 1e-12)
    out *= 1.0 + 0.05 * smooth_random(n, sample_rate, 0.5, rng)
    return out + 0.002 * np.abs(out).max() * rng.standard_normal(n)
