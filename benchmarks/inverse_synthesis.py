"""Inverse synthesis: recover a hidden random patch by gradient descent on a spectral distance.

Protocol (per synth, per seed ``s`` in ``0 .. seeds-1``):

1. target: the synth at batch 1, ``randomize_(Generator(10_000 + s))`` (every parameter
   uniform along its linear / log range, 2 % margin), rendered once;
2. candidates: the same synth at ``--batch`` (8) candidates, ``randomize_(Generator(s))``
   (independent random restarts in the batch dimension);
3. ``--steps`` (300) Adam steps on the unconstrained parameters, learning rate cosine-
   annealed from ``--lr`` (0.1) to ``--lr-end`` (0.002), loss = sum over candidates of
   ``MultiResolutionSTFTDistance()`` (defaults: n_fft 512/1024/2048/4096, hop n_fft/4,
   log + linear magnitude L1) to the target;
4. keep the candidate with the lowest final distance.

Reported, with the same default ``MultiResolutionSTFTDistance``:

* ``random start``: median distance of the random candidates at step 0 (what a random
  patch scores);
* ``kept start`` / ``kept final``: the kept candidate before and after the 300 steps;
* ``reduction``: ``1 - kept final / kept start`` (the reduction the optimisation achieved
  on the run that is kept) and ``vs random``: ``1 - kept final / random start``.

Variants (``--given``): parameters copied from the target and frozen, to separate the
search over frequencies (hard: the spectral loss is a comb in frequency) from the rest;
e.g. ``--given f0_hz,ratio`` is FM resynthesis with a known operator tuning, the
setting of DDX7-style differentiable FM, where frequency ratios are fixed.

Defaults: 22050 Hz, 0.5 s, stereo; FMSynth(4 operators, feedback) and
ImpactSynth(32 modes, 8 bands); one CPU thread per process.

Usage::

    python benchmarks/inverse_synthesis.py [--synths fm,impact] [--seeds 10] [--steps 300]
        [--batch 8] [--given f0_hz,ratio] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from sds_audio.spectral import MultiResolutionSTFTDistance
from sds_audio.synths import FMSynth, ImpactSynth

BAR = 0.8


def build(name: str, batch: int, sample_rate: int):
    if name == "fm":
        return FMSynth(n_operators=4, sample_rate=sample_rate, batch_size=batch)
    if name == "impact":
        return ImpactSynth(n_modes=32, n_bands=8, sample_rate=sample_rate, batch_size=batch)
    raise SystemExit(f"unknown synth {name!r}: use fm or impact")


def fit(name: str, seed: int, *, steps: int, batch: int, lr: float, lr_end: float, sample_rate: int,
        n_samples: int, given: tuple[str, ...] = ()) -> dict[str, float]:
    """One inverse-synthesis run; returns the distances and the wall time."""
    distance = MultiResolutionSTFTDistance()
    target_synth = build(name, 1, sample_rate).randomize_(torch.Generator().manual_seed(10_000 + seed))
    with torch.no_grad():
        target = target_synth(n_samples)
    synth = build(name, batch, sample_rate).randomize_(torch.Generator().manual_seed(seed))
    frozen = [k for k in given if k in synth.raw]
    with torch.no_grad():
        random_start = distance(synth(n_samples), target)
        for k in frozen:
            synth.raw[k].copy_(target_synth.raw[k].expand_as(synth.raw[k]))
        start = distance(synth(n_samples), target)
    params = [p for k, p in synth.raw.items() if k not in frozen]
    opt = torch.optim.Adam(params, lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps, eta_min=lr_end)
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        distance(synth(n_samples), target).sum().backward()
        opt.step()
        schedule.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        final = distance(synth(n_samples), target)
    kept = int(final.argmin())
    return {"random": float(random_start.median()), "start": float(start[kept]), "final": float(final[kept]),
            "reduction": 1.0 - float(final[kept] / start[kept]),
            "vs_random": 1.0 - float(final[kept] / random_start.median()), "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synths", default="fm,impact")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--lr-end", type=float, default=0.002)
    parser.add_argument("--sample-rate", type=int, default=22050)
    parser.add_argument("--duration", type=float, default=0.5)
    parser.add_argument("--given", default="", help="comma-separated parameters copied from the target and frozen")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_samples = int(round(args.duration * args.sample_rate))
    given = tuple(k for k in args.given.split(",") if k)
    print(f"{args.steps} Adam steps, {args.batch} random restarts, lr {args.lr} -> {args.lr_end} (cosine), "
          f"{args.duration} s at {args.sample_rate} Hz, MultiResolutionSTFTDistance() "
          f"{'(given: ' + ', '.join(given) + ')' if given else ''}")
    header = (f"{'synth':<8} {'seed':>4} {'random start':>12} {'kept start':>10} {'kept final':>10} "
              f"{'reduction':>9} {'vs random':>9} {'s':>6}")
    for name in args.synths.split(","):
        print(header)
        print("-" * len(header))
        rows = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            r = fit(name, seed, steps=args.steps, batch=args.batch, lr=args.lr, lr_end=args.lr_end,
                    sample_rate=args.sample_rate, n_samples=n_samples, given=given)
            rows.append(r)
            print(f"{name:<8} {seed:>4} {r['random']:>12.3f} {r['start']:>10.3f} {r['final']:>10.3f} "
                  f"{r['reduction']:>9.1%} {r['vs_random']:>9.1%} {r['seconds']:>6.0f}", flush=True)
        reductions = [r["reduction"] for r in rows]
        vs_random = [r["vs_random"] for r in rows]
        print(f"{name}: median reduction {statistics.median(reductions):.1%} "
              f"({sum(x >= BAR for x in reductions)}/{len(rows)} seeds >= {BAR:.0%}); "
              f"vs random start median {statistics.median(vs_random):.1%} "
              f"({sum(x >= BAR for x in vs_random)}/{len(rows)} >= {BAR:.0%})\n", flush=True)


if __name__ == "__main__":
    main()
