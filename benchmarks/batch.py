"""Preset-library throughput: prompts per hour with 1, 2, ... workers, local pool and a local Ray cluster.

For each runner (the local process pool; a Ray cluster started here with ``num_cpus`` equal to
the worker count) and each worker count, ``sds_audio.batch.build_library`` runs the same
``--prompts`` prompts (seed 0) into a fresh temporary library, and the table reports the wall
time of the whole command, prompts per hour, the mean wall and CPU time of one run in its
worker (model loading included) and the speedup over one worker of the same runner. The CPU
time per run does not depend on the other jobs of the machine: when it stays the same from 1
to N workers while the wall time per run grows, the cores were busy, not the runs slower. The work is
embarrassingly parallel, so the goal is 2 workers >= 1.7x the throughput of 1; on a machine
whose cores other jobs share, the speedup is capped by the cores that are really free (the
load average at the start is printed with the table).

The prompts are a fixed list (this is a throughput benchmark: there is no quality figure, so
no validation / test split); each worker's first run also pays the process's imports, so use
at least 3 prompts per worker for a figure close to the steady state.

Usage::

    python benchmarks/batch.py [--prompts 8] [--workers 1,2] [--ray] [--steps 20] [--prior embedded]
        [--restarts 1] [--duration-s 1.0] [--no-judge]

Multi-node Ray cluster: start the cluster (``ray start --head`` on one node,
``ray start --address HEAD:6379`` on the others, sds-audio installed on each), then run
``sds-audio batch PROMPTS.txt -o LIB/ --ray HEAD:6379`` on the head node; this script's
``--ray-address HEAD:6379`` times that cluster as it is (one row; ``--workers`` is ignored).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = [
    "kick drum, bass, reverb", "a soft bell", "snare drum, tight", "hitting a pot with a wooden spoon",
    "plucked string, bright", "low brass stab", "glass clink", "deep tom drum",
    "electric piano chord", "wooden block knock", "metallic clang", "warm synth pad",
    "hi-hat, closed", "marimba note", "door slam", "church organ note",
]


def _run(runner: str, workers: int, n_prompts: int, options, ray_address: str | None) -> dict:
    from sds_audio.batch import build_library

    with tempfile.TemporaryDirectory(prefix="sds-batch-bench-") as tmp:
        prompts = Path(tmp) / "prompts.txt"
        prompts.write_text("\n".join(PROMPTS[:n_prompts]) + "\n", encoding="utf-8")
        ray = None
        if runner == "ray" and ray_address is None:
            import ray

            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(num_cpus=workers, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
        try:
            t0 = time.perf_counter()
            summary = build_library(prompts, Path(tmp) / "lib", "fm", "0", options, workers=max(workers, 1),
                                    ray_address=(ray_address or "auto") if runner == "ray" else None,
                                    progress=False)
            wall_s = time.perf_counter() - t0
            cpu_s = [json.loads((Path(tmp) / "lib" / r.path / "run.json").read_text())["batch"]["cpu_s"]
                     for r in summary.rows if r.status == "done"]
        finally:
            if ray is not None:
                ray.shutdown()
    run_s = [r.wall_s for r in summary.rows if r.wall_s is not None]
    return {"runner": runner, "workers": workers, "runs": summary.n_run, "failed": summary.n_failed,
            "wall_s": wall_s, "per_hour": 3600 * summary.n_run / wall_s,
            "mean_run_s": statistics.mean(run_s) if run_s else float("nan"),
            "mean_cpu_s": statistics.mean(cpu_s) if cpu_s else float("nan")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8, help=f"prompts per row (at most {len(PROMPTS)})")
    parser.add_argument("--workers", default="1,2", help="worker counts, e.g. 1,2,4")
    parser.add_argument("--ray", action="store_true", help="also time a local Ray cluster of each size")
    parser.add_argument("--ray-address", default=None, help="time this existing cluster instead (one row)")
    parser.add_argument("--prior", default="embedded")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--restarts", type=int, default=1)
    parser.add_argument("--duration-s", type=float, default=1.0)
    parser.add_argument("--no-judge", action="store_true")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    from sds_audio.jobs import JobOptions

    options = JobOptions(prior=args.prior, steps=args.steps, restarts=args.restarts, duration_s=args.duration_s,
                         judge=not args.no_judge, device="cpu", progress=False)
    n_prompts = min(args.prompts, len(PROMPTS))
    counts = [int(w) for w in args.workers.split(",")]
    plan = [("ray", 0)] if args.ray_address else \
        [("local", w) for w in counts] + ([("ray", w) for w in counts] if args.ray else [])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# {dt.date.today().isoformat()}  {platform.node()}  {os.cpu_count()} CPUs, load average {load:.1f}  "
          f"python {platform.python_version()}")
    print(f"# {' '.join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])}")
    print(f"# {n_prompts} prompts, prior {args.prior}, {args.steps} steps, {args.restarts} restart(s), "
          f"{args.duration_s:g} s, judge {'off' if args.no_judge else 'on'}, device cpu, 1 torch thread per worker")
    rows = []
    print(f"{'runner':8s} {'workers':>7s} {'runs':>5s} {'wall s':>8s} {'prompts/h':>10s} {'run s':>7s} "
          f"{'cpu s':>7s} {'speedup':>8s}")
    for runner, workers in plan:
        row = _run(runner, workers, n_prompts, options, args.ray_address)
        rows.append(row)
        base = next((r for r in rows if r["runner"] == runner and r["workers"] == 1), None)
        row["speedup"] = row["per_hour"] / base["per_hour"] if base and not args.ray_address else float("nan")
        label = "cluster" if args.ray_address else str(workers)
        failed = f"  ({row['failed']} failed)" if row["failed"] else ""
        print(f"{runner:8s} {label:>7s} {row['runs']:5d} {row['wall_s']:8.1f} {row['per_hour']:10.0f} "
              f"{row['mean_run_s']:7.1f} {row['mean_cpu_s']:7.1f} {row['speedup']:8.2f}{failed}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
