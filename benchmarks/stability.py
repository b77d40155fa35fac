"""Stability of the SDS optimisation at a learning rate far above the default.

For each synth, runs :func:`sds_audio.tasks.synthesize.synthesize` for ``--steps``
steps (default 1,000) at ``--lr-scale`` times the default learning rate (default 10,
i.e. 0.5) and checks after every step: the SDS loss of every restart is finite,
every unconstrained parameter is finite, and every physical control is finite and
inside its declared range (``ParamSpec.contains``). The table gives, per synth:
steps run, the steps with a non-finite loss or parameter, the steps with a control
out of range, the share of unconstrained values saturated (``|u| > 12``, where the
sigmoid's gradient is below 1e-5: the value sits at a range end), the loss at the
start and end (mean over restarts), and the wall time.

Prompts come from a fixed list (one per synth). The prior is the shipped embedded
prior, or with ``--tiny`` the tiny random prior of the tests (seconds, for a smoke
run; nothing is downloaded either way). Seeds are fixed, so a rerun on the same
machine gives the same table.

Usage::

    python benchmarks/stability.py [--steps 1000] [--lr-scale 10] [--restarts 2] [--duration-s 1.0]
                                   [--synths fm impact] [--tiny] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

from sds_audio.jobs import build_synth
from sds_audio.priors.registry import load_prior
from sds_audio.sds import SDSConfig
from sds_audio.tasks.synthesize import SynthesisConfig, synthesize

PROMPTS = {"fm": "kick drum, bass, reverb", "impact": "hitting a pot with a wooden spoon", "dx7": "electric piano"}
SATURATED_U = 12.0


@dataclasses.dataclass
class Row:
    synth: str
    steps: int = 0
    nonfinite_steps: int = 0
    out_of_range_steps: int = 0
    saturated_share: float = 0.0
    loss_start: float = math.nan
    loss_end: float = math.nan
    seconds: float = 0.0


def run_one(synth_type: str, prior, args: argparse.Namespace) -> Row:
    row = Row(synth_type)
    synth = build_synth(synth_type, int(prior.sample_rate), int(prior.channels), seed=0)
    synth = type(synth)(**synth.config(), batch_size=args.restarts).to(prior.device)   # used in place by the run
    default_lr = SynthesisConfig().lr
    config = SynthesisConfig(steps=args.steps, lr=default_lr * args.lr_scale, restarts=args.restarts,
                             duration_s=args.duration_s, judge_every=0, checkpoint_every=0, seed=0,
                             sds=SDSConfig(denoise_steps=args.denoise_steps, guidance_scale=5.0))

    def check(step: int, entry: dict) -> None:
        row.steps = step + 1
        losses = entry["loss"]
        if step == 0:
            row.loss_start = sum(losses) / len(losses)
        row.loss_end = sum(losses) / len(losses)
        raw_ok = all(bool(torch.isfinite(u).all()) for u in synth.raw.values())
        if not (raw_ok and all(math.isfinite(v) for v in losses)):
            row.nonfinite_steps += 1
        with torch.no_grad():
            controls = synth.controls()
        if not all(spec.contains(controls[name].double()) for name, spec in synth.param_specs.items()):
            row.out_of_range_steps += 1

    t0 = time.perf_counter()
    result = synthesize(synth, PROMPTS[synth_type], prior, config, judge=None, progress=not args.quiet,
                        on_step=check)
    row.seconds = time.perf_counter() - t0
    assert result.synth is synth, "the run optimised another synth than the one checked"
    values = torch.cat([u.detach().flatten() for u in synth.raw.values()])
    row.saturated_share = float((values.abs() > SATURATED_U).float().mean())
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--lr-scale", type=float, default=10.0, help="times the default learning rate (0.05)")
    parser.add_argument("--restarts", type=int, default=2)
    parser.add_argument("--duration-s", type=float, default=1.0)
    parser.add_argument("--denoise-steps", type=int, default=4)
    parser.add_argument("--synths", nargs="+", default=["fm", "impact"], choices=sorted(PROMPTS))
    parser.add_argument("--tiny", action="store_true", help="the tests' tiny random prior (a smoke run)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
            from tiny_embedded import write_prior_dir

            source = str(write_prior_dir(Path(tmp) / "tiny"))
            args.duration_s = min(args.duration_s, 0.5)
        else:
            source = "embedded"
        prior = load_prior(source, device=args.device)
        rows = [run_one(name, prior, args) for name in args.synths]

    print(f"\nSDS stability: {args.steps} steps at lr {SynthesisConfig().lr * args.lr_scale:g} "
          f"({args.lr_scale:g}x default), {args.restarts} restarts, {args.duration_s:g} s, prior "
          f"{'tiny random' if args.tiny else 'embedded'}, {args.device}, {args.threads} thread(s)")
    header = (f"{'synth':8s} {'steps':>6s} {'non-finite':>10s} {'out of range':>12s} {'saturated u':>11s} "
              f"{'loss start':>10s} {'loss end':>9s} {'time (s)':>9s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r.synth:8s} {r.steps:6d} {r.nonfinite_steps:10d} {r.out_of_range_steps:12d} "
              f"{r.saturated_share:11.1%} {r.loss_start:10.4f} {r.loss_end:9.4f} {r.seconds:9.1f}")
    ok = all(r.nonfinite_steps == 0 and r.out_of_range_steps == 0 and r.steps == args.steps for r in rows)
    print("all steps finite and in range" if ok else "FAILED: non-finite values or controls out of range")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
