"""Forward + backward throughput of the differentiable renderers (CPU or CUDA).

For each renderer and batch size: render 1 s of audio per candidate at 44.1 kHz,
take a scalar loss (mean square), back-propagate to the unconstrained
parameters, and time it. "x real time" is seconds of audio (batch x duration)
per wall-clock second, from the median over ``--repeats`` timed calls after one
warm-up call. The CPU-time column is the process CPU time of the same calls
(all threads), which is less sensitive than wall time to other jobs on a shared
machine; "x rt / core" is audio seconds per CPU second.

Rows (all parameters drawn with ``randomize_`` from a fixed seed, so feedback,
pitch sweeps and modulation are all active):

* FMSynth, 4 operators, stereo, per-operator Kepler self-feedback (default config);
* FMSynth, 4 operators, ``feedback=False`` (for reference);
* ImpactSynth, 256 modes, 32 noise bands, stereo;
* DX7Synth, stereo, candidate ``i`` on the ``i``-th algorithm of the seeded restart order
  (``restart_algorithms(0)``: 13, 32, 26, ...), so a batch mixes algorithms as the ``dx7``
  command's restarts do;
* torchsynth's ``Voice`` (its nearest voice: 2 oscillators + noise, ADSR, mono),
  side by side, when ``torchsynth`` can be imported. torchsynth is not a
  dependency of sds-audio; point ``SDS_TORCHSYNTH_PATH`` at a folder it was
  installed into (e.g. ``pip install --target /tmp/ts --no-deps torchsynth
  "pytorch-lightning==1.6.5.post0" pyDeprecate "setuptools<81" tensorboard protobuf absl-py``)
  and it is added to ``sys.path``. torchsynth 1.0 refuses gradients unless its
  config's ``no_grad`` flag is cleared after construction, which this script does.

Usage::

    python benchmarks/render_speed.py [--repeats 5] [--threads N] [--device cpu]

The ``sds-audio fm`` / ``dx7`` commands' own shape (2 restarts of 1.5 s, mono, at the embedded
prior's 22.05 kHz)::

    python benchmarks/render_speed.py --threads 1 --repeats 9 --batches 2 --sample-rate 22050 \
        --duration-s 1.5 --channels 1 --only FMSynth,DX7Synth
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

from sds_audio.synths import DX7Synth, FMSynth, ImpactSynth
from sds_audio.synths.dx7 import restart_algorithms

SAMPLE_RATE = 44100
DURATION_S = 1.0


def _time_calls(step, repeats: int, device: torch.device) -> tuple[float, float]:
    """Median wall and CPU seconds of ``step()`` over ``repeats`` calls after a warm-up."""
    step()
    walls, cpus = [], []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        w0, c0 = time.perf_counter(), time.process_time()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def _synth_step(synth, n_samples: int):
    def step():
        synth.zero_grad(set_to_none=True)
        synth(n_samples).square().mean().backward()
    return step


def _torchsynth_voice(batch: int, device: torch.device, sample_rate: int = SAMPLE_RATE,
                      duration_s: float = DURATION_S):
    """torchsynth's Voice with gradients on, or a string saying why not."""
    path = os.environ.get("SDS_TORCHSYNTH_PATH")
    if path and path not in sys.path:
        sys.path.append(path)
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchsynth.config import SynthConfig
            from torchsynth.synth import Voice
    except Exception as exc:  # noqa: BLE001 - any import failure is reported, not raised
        hint = "" if path else " (set SDS_TORCHSYNTH_PATH to a folder torchsynth is installed in)"
        return f"torchsynth not importable: {type(exc).__name__}: {exc}{hint}"
    config = SynthConfig(batch_size=batch, reproducible=False, sample_rate=sample_rate,
                         buffer_size_seconds=duration_s)
    config.no_grad = False          # torchsynth 1.0 guards gradients behind this flag
    voice = Voice(config).to(device)

    def step():
        voice.zero_grad(set_to_none=True)
        out = voice()
        audio = out[0] if isinstance(out, tuple) else out
        audio.square().mean().backward()
    return step


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--sample-rate", type=int, default=SAMPLE_RATE)
    parser.add_argument("--duration-s", type=float, default=DURATION_S, help="seconds rendered per candidate")
    parser.add_argument("--channels", type=int, default=2, choices=(1, 2))
    parser.add_argument("--only", default="", help="comma-separated renderer name prefixes to run (default: all)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sr, duration_s, channels = args.sample_rate, args.duration_s, args.channels
    n_samples = int(sr * duration_s)
    only = [p for p in args.only.split(",") if p]
    layout = "stereo" if channels == 2 else "mono"
    batches = [int(b) for b in args.batches.split(",")]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} CPUs, load average {load:.1f}; {duration_s:g} s at {sr} Hz per candidate, "
          f"forward + backward, median of {args.repeats}")
    header = f"{'renderer':<44} {'batch':>5} {'wall ms':>9} {'x real time':>11} {'CPU ms':>9} {'x rt / core':>11}"
    print(header)
    print("-" * len(header))
    rows = [
        (f"FMSynth 4 ops, feedback, {layout}", lambda b: FMSynth(4, sr, channels, batch_size=b)),
        (f"FMSynth 4 ops, no feedback, {layout}", lambda b: FMSynth(4, sr, channels, batch_size=b, feedback=False)),
        (f"ImpactSynth 256 modes, 32 bands, {layout}", lambda b: ImpactSynth(256, 32, sr, channels, batch_size=b)),
        (f"DX7Synth, restart algorithms, {layout}",
         lambda b: DX7Synth(algorithm=restart_algorithms(0), sample_rate=sr, channels=channels, batch_size=b)),
    ]
    for name, build in rows:
        if only and not any(name.startswith(p) for p in only):
            continue
        for batch in batches:
            synth = build(batch).randomize_(torch.Generator().manual_seed(0)).to(device)
            wall, cpu = _time_calls(_synth_step(synth, n_samples), args.repeats, device)
            audio_s = batch * duration_s
            print(f"{name:<44} {batch:>5} {wall * 1e3:>9.1f} {audio_s / wall:>11.1f} {cpu * 1e3:>9.1f} "
                  f"{audio_s / max(cpu, 1e-9):>11.1f}", flush=True)
    for batch in batches if not only or any("torchsynth".startswith(p) for p in only) else []:
        step = _torchsynth_voice(batch, device, sr, duration_s)
        if isinstance(step, str):
            print(f"{'torchsynth Voice':<44} {batch:>5}  {step}")
            break
        wall, cpu = _time_calls(step, args.repeats, device)
        print(f"{'torchsynth 1.0 Voice (mono)':<44} {batch:>5} {wall * 1e3:>9.1f} {batch * duration_s / wall:>11.1f} "
              f"{cpu * 1e3:>9.1f} {batch * duration_s / max(cpu, 1e-9):>11.1f}", flush=True)


if __name__ == "__main__":
    main()
