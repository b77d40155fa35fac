"""DX7Synth against the Dexed engine: random voices rendered by both, compared.

Protocol:

1. ``--voices`` (64) random voices (:func:`random_voice`, seeded by ``--seed``), algorithm
   ``i % 32 + 1`` for voice ``i``, so every algorithm is covered; every field the renderer
   models is drawn (levels, rates, ratios / fixed frequencies, detune, feedback, pitch
   envelope, keyboard rate and level scaling, velocity sensitivity); LFO depths are 0 (the
   LFO is left out of DX7Synth).
2. Each voice is played at MIDI key ``--key`` (60), velocity 100, for ``--duration-s`` (1.5 s)
   with the key held for 75 % of it, at 44.1 kHz: by ``dexed-py`` (the Dexed / msfa engine,
   GPL-3, a benchmark dependency only) from the voice's VCED bytes, and by DX7Synth from the
   same voice (its output times the carrier count: Dexed sums the carriers).
3. Per voice: **f0** error in cents (the strongest spectral peak of Dexed's held part against
   DX7Synth's strongest within 50 cents of it; parabolic interpolation); **attack** (from 40 dB
   below the peak to within 3 dB of it) and **release** time (note-off until 60 dB below the
   level at note-off; T30 / T20 where that would end within 50 dB of the peak, above Dexed's
   12-bit noise floor), on 5 ms RMS frames, as relative errors where the reference time is at
   least 50 ms; the **envelope difference**: median |dB| between the two 5 ms RMS envelopes
   where either is within 50 dB of the peak (crossing times are fragile where an envelope
   beats or flattens near a threshold; this is not); **log-spectral distance** (LSD:
   RMS over bins of the dB difference of STFT power, n_fft 2048, hop 512, both floored 60 dB
   below the louder render's peak; median over frames). The **neighbour** distance is the same
   LSD between Dexed's renders of the voice and of the voice with its first carrier's coarse
   one step up (down from 31): the goal is engines closer than that.
4. Rounding cost: ``--rounding`` (32) random continuous DX7Synth candidates
   (``randomize_``) against their exported (rounded) voices, both rendered by DX7Synth; with
   the pitch fields rounded in the render (``quantize_pitch``, the default) and without.

Run: ``python benchmarks/dx7_exactness.py [--voices 64]`` (one thread; about 1 s per voice).
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sds_audio.exports.syx import DX7Voice, GLOBAL_FIELDS, OPERATOR_FIELDS  # noqa: E402
from sds_audio.synths import dx7_tables as tab  # noqa: E402
from sds_audio.synths.dx7 import DX7Synth  # noqa: E402

SAMPLE_RATE = 44100
HOLD_FRACTION = 0.75
#: attack / release times are compared where the reference's is at least this long (10 frames)
MIN_TIME_S = 0.05


def random_voice(rng: random.Random, algorithm: int) -> DX7Voice:
    """A random voice of ``algorithm`` (1..32) that makes an audible sound (see the module docstring)."""
    voice = DX7Voice.init_voice()
    carriers = tab.ALGORITHMS[algorithm - 1].carriers
    for k, op in enumerate(voice.operators):
        for name, top in OPERATOR_FIELDS:
            op[name] = rng.randint(0, top)
        op["output_level"] = rng.randint(80, 99) if k in carriers else rng.randint(40, 95)
        op.update(r1=rng.randint(40, 99), r2=rng.randint(20, 99), r3=rng.randint(20, 99), r4=rng.randint(40, 99),
                  l1=rng.randint(75, 99), l2=rng.randint(50, 99), l3=rng.randint(40, 99), l4=rng.randint(0, 30))
        op["osc_mode"] = 1 if rng.random() < 0.1 else 0
        op["coarse"] = rng.randint(0, 8) if op["osc_mode"] == 0 else rng.randint(1, 3)
        op["fine"] = rng.randint(0, 99) if rng.random() < 0.3 else 0
        op["left_depth"], op["right_depth"] = rng.randint(0, 40), rng.randint(0, 40)
    if all(voice.operators[c]["osc_mode"] for c in carriers):
        voice.operators[carriers[0]]["osc_mode"] = 0
    for name, top in GLOBAL_FIELDS:
        voice.globals[name] = rng.randint(0, top)
    voice.globals.update(algorithm=algorithm - 1, lfo_pitch_depth=0, lfo_amp_depth=0, transpose=24,
                         pl1=rng.randint(45, 55), pl2=rng.randint(45, 55), pl3=50, pl4=rng.randint(45, 55))
    voice.name = f"RANDOM {algorithm:02d} "[:10]
    voice.validate()
    return voice


def render_dexed(voice: DX7Voice, key: int, duration_s: float) -> np.ndarray:
    """Dexed's render (mono float64) of ``voice``; the key is held for HOLD_FRACTION of the time."""
    import dexed

    synth = dexed.DexedSynth(sample_rate=SAMPLE_RATE)
    synth.load_patch(dexed.Patch.from_sysex(voice.to_vced_data() + b"\x00"))
    out = synth.render(midi_note=key, velocity=100, note_duration=duration_s * HOLD_FRACTION,
                       render_duration=duration_s)
    return np.asarray(out, dtype=np.float64)


def render_dx7synth(voice: DX7Voice, key: int, duration_s: float) -> np.ndarray:
    """DX7Synth's render of ``voice`` at Dexed's scale (times the carrier count)."""
    synth, controls = DX7Synth.from_voice(voice, key=key, hold_fraction=HOLD_FRACTION, sample_rate=SAMPLE_RATE,
                                          channels=1)
    with torch.no_grad():
        audio = synth.render(controls, int(round(duration_s * SAMPLE_RATE)))[0, 0].double().numpy()
    return audio * len(tab.ALGORITHMS[voice.globals["algorithm"]].carriers)


# -- measures ----------------------------------------------------------------------------------
def _power_spectrogram(x: np.ndarray, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    return np.abs(np.fft.rfft(frames, axis=-1)) ** 2


def log_spectral_distance(a: np.ndarray, b: np.ndarray, floor_db: float = 60.0) -> float:
    """Median over frames of the RMS dB difference of STFT power (floored ``floor_db`` below the peak)."""
    pa, pb = _power_spectrogram(a), _power_spectrogram(b)
    floor = max(pa.max(), pb.max()) * 10 ** (-floor_db / 10)
    if floor == 0:
        return 0.0
    da, db = 10 * np.log10(pa + floor), 10 * np.log10(pb + floor)
    per_frame = np.sqrt(np.mean((da - db) ** 2, axis=-1))
    loud = (pa.max(axis=-1) > floor) | (pb.max(axis=-1) > floor)
    return float(np.median(per_frame[loud])) if loud.any() else 0.0


def peak_hz(x: np.ndarray, near_hz: float | None = None, cents: float = 50.0) -> float:
    """Frequency of the strongest spectral peak (Hann window, 8x zero padding, parabolic
    interpolation); with ``near_hz``, of the strongest within ``cents`` of it."""
    n = len(x) * 8
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    lo, hi = 1, len(spectrum) - 1
    if near_hz is not None:
        lo = max(1, int(near_hz * 2 ** (-cents / 1200) * n / SAMPLE_RATE))
        hi = min(len(spectrum) - 1, int(near_hz * 2 ** (cents / 1200) * n / SAMPLE_RATE) + 2)
    k = int(np.argmax(spectrum[lo:hi])) + lo
    a, b, c = np.log(spectrum[k - 1:k + 2] + 1e-300)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * SAMPLE_RATE / n


FRAME_S = 0.005


def envelope_db(x: np.ndarray, frame: int = int(FRAME_S * SAMPLE_RATE)) -> np.ndarray:
    """RMS level per 5 ms frame, dB."""
    m = len(x) // frame
    rms = np.sqrt(np.mean(x[:m * frame].reshape(m, frame) ** 2, axis=1))
    return 20 * np.log10(rms + 1e-12)


def _crossing(env: np.ndarray, level: float, start: int = 0, rising: bool = True) -> float | None:
    """First frame position (fractional, linear between frames) at or past ``level`` from ``start``."""
    part = env[start:]
    hits = np.nonzero(part >= level if rising else part <= level)[0]
    if len(hits) == 0:
        return None
    i = int(hits[0])
    if i == 0:
        return float(start)
    a, b = part[i - 1], part[i]
    return start + i - 1 + (level - a) / (b - a)


def attack_s(env: np.ndarray, frame_s: float = FRAME_S) -> float:
    """Time from 40 dB below the peak to within 3 dB of it."""
    peak = env.max()
    return (_crossing(env, peak - 3) - _crossing(env, peak - 40)) * frame_s


def release_s(env: np.ndarray, off_frame: int, drop_db: float, frame_s: float = FRAME_S) -> float | None:
    """Time from note-off until the level is ``drop_db`` below its level at note-off (None if never)."""
    at = _crossing(env, env[off_frame] - drop_db, off_frame, rising=False)
    return None if at is None else (at - off_frame) * frame_s


def compare(voice: DX7Voice, key: int, duration_s: float) -> dict[str, float | None]:
    """Every measure for one voice (see the module docstring)."""
    t0 = time.perf_counter()
    ref = render_dexed(voice, key, duration_s)
    t1 = time.perf_counter()
    ours = render_dx7synth(voice, key, duration_s)
    t2 = time.perf_counter()
    held = slice(int(0.25 * duration_s * SAMPLE_RATE), int(HOLD_FRACTION * duration_s * SAMPLE_RATE))
    f_ref = peak_hz(ref[held])
    f_ours = peak_hz(ours[held], near_hz=f_ref)
    env_ref, env_ours = envelope_db(ref), envelope_db(ours)
    off = int(HOLD_FRACTION * duration_s / FRAME_S) - 1
    rel_ref = rel_ours = None
    for drop in (60.0, 30.0, 20.0):      # ending at least 50 dB above the reference's peak (its noise floor)
        if env_ref[off] - drop < env_ref.max() - 50:
            continue
        rel_ref, rel_ours = release_s(env_ref, off, drop), release_s(env_ours, off, drop)
        if rel_ref is not None and rel_ours is not None:
            break
    att_ref, att_ours = attack_s(env_ref), attack_s(env_ours)
    audible = np.maximum(env_ref, env_ours) > env_ref.max() - 50
    envelope_err = float(np.median(np.abs(env_ref - env_ours)[audible]))
    neighbour = voice.copy()
    carrier = neighbour.operators[tab.ALGORITHMS[voice.globals["algorithm"]].carriers[0]]
    carrier["coarse"] = carrier["coarse"] + 1 if carrier["coarse"] < 31 else 30
    return {
        "algorithm": voice.globals["algorithm"] + 1,
        "f0_cents": abs(1200 * math.log2(f_ours / f_ref)),
        "attack_err": abs(att_ours - att_ref) / att_ref if att_ref >= MIN_TIME_S else None,
        "release_err": (abs(rel_ours - rel_ref) / rel_ref if rel_ref is not None and rel_ours is not None
                        and rel_ref >= MIN_TIME_S else None),
        "envelope_db": envelope_err,
        "lsd_db": log_spectral_distance(ours, ref),
        "neighbour_lsd_db": log_spectral_distance(render_dexed(neighbour, key, duration_s), ref),
        "level_db": float(20 * np.log10((np.sqrt(np.mean(ours ** 2)) + 1e-12) / (np.sqrt(np.mean(ref ** 2)) + 1e-12))),
        "dexed_s": t1 - t0, "dx7synth_s": t2 - t1,
    }


def rounding_cost(n: int, seed: int, key: int, duration_s: float, quantize_pitch: bool) -> list[float]:
    """LSD between continuous random DX7Synth candidates and their rounded voices (both DX7Synth)."""
    out = []
    for i in range(n):
        synth = DX7Synth(algorithm=i % 32 + 1, key=key, hold_fraction=HOLD_FRACTION, sample_rate=SAMPLE_RATE,
                         channels=1, quantize_pitch=quantize_pitch)
        synth.randomize_(torch.Generator().manual_seed(seed * 1000 + i))
        voice = synth.to_voice(0)
        rounded, controls = DX7Synth.from_voice(voice, key=key, hold_fraction=HOLD_FRACTION,
                                                sample_rate=SAMPLE_RATE, channels=1)
        n_samples = int(round(duration_s * SAMPLE_RATE))
        with torch.no_grad():
            a = synth(n_samples)[0, 0].double().numpy()
            b = rounded.render(controls, n_samples)[0, 0].double().numpy()
        out.append(log_spectral_distance(a, b))
    return out


def _summary(values: list[float | None]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    return f"median {np.median(vals):.3g}, 90th pct {np.percentile(vals, 90):.3g}, max {max(vals):.3g} (n={len(vals)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", type=int, default=64)
    parser.add_argument("--rounding", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key", type=int, default=60)
    parser.add_argument("--duration-s", type=float, default=1.5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rng = random.Random(args.seed)
    rows = [compare(random_voice(rng, i % 32 + 1), args.key, args.duration_s) for i in range(args.voices)]
    print(f"DX7Synth vs dexed-py: {args.voices} random voices (algorithms 1-32), key {args.key}, "
          f"{args.duration_s:g} s, 44.1 kHz; {platform.machine()} {platform.processor() or ''}, 1 thread")
    print()
    print("| measure | value |")
    print("|---|---|")
    f0 = [r["f0_cents"] for r in rows]
    print(f"| f0 error (cents) | {_summary(f0)}; within 5 cents: {sum(v <= 5 for v in f0)}/{len(f0)} |")
    att = [r["attack_err"] for r in rows]
    print(f"| attack time error | {_summary(att)}; within 10 %: "
          f"{sum(v <= 0.1 for v in att if v is not None)}/{sum(v is not None for v in att)} |")
    rel = [r["release_err"] for r in rows]
    print(f"| release time (T60) error | {_summary(rel)}; within 10 %: "
          f"{sum(v <= 0.1 for v in rel if v is not None)}/{sum(v is not None for v in rel)} |")
    print(f"| envelope difference (dB, median over 5 ms frames within 50 dB of the peak) | "
          f"{_summary([r['envelope_db'] for r in rows])} |")
    lsd = [r["lsd_db"] for r in rows]
    nb = [r["neighbour_lsd_db"] for r in rows]
    print(f"| LSD DX7Synth vs Dexed (dB) | {_summary(lsd)} |")
    print(f"| LSD Dexed vs Dexed one coarse step apart (dB) | {_summary(nb)} |")
    print(f"| engines closer than the coarse neighbour | {sum(a < b for a, b in zip(lsd, nb))}/{len(rows)} |")
    print(f"| level difference (dB) | {_summary([abs(r['level_db']) for r in rows])} |")
    print(f"| render time per voice (s) | Dexed {np.median([r['dexed_s'] for r in rows]):.3f}, "
          f"DX7Synth {np.median([r['dx7synth_s'] for r in rows]):.3f} (medians) |")
    for quantize in (True, False) if args.rounding else ():
        rc = rounding_cost(args.rounding, args.seed, args.key, args.duration_s, quantize)
        how = "pitch fields rounded in the render" if quantize else "all fields continuous"
        print(f"| rounding cost, {how}: LSD continuous vs exported voice (dB) | {_summary(rc)} |")
    print()
    print("per algorithm (LSD dB, engines / neighbour):")
    for a in range(1, 33):
        sel = [r for r in rows if r["algorithm"] == a]
        if sel:
            print(f"  {a:2d}: " + ", ".join(f"{r['lsd_db']:.1f}/{r['neighbour_lsd_db']:.1f}" for r in sel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
