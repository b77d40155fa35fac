"""``sds-audio batch``: a preset library from a prompts file (see :mod:`sds_audio.batch`)."""

from __future__ import annotations

import argparse
import sys


def _cmd_batch(args: argparse.Namespace) -> int:
    from ..batch import LIBRARY_CSV, LIBRARY_FILE, build_library
    from ..jobs import JobOptions

    options = JobOptions(prior=args.prior, steps=args.steps, device=args.device, guidance_scale=args.cfg,
                         negative_prompt=args.negative, duration_s=args.duration_s, restarts=args.restarts,
                         lr=args.lr, denoise_steps=args.denoise_steps, judge=not args.no_judge,
                         codec_precision=args.codec_precision, progress=False)
    try:
        summary = build_library(args.prompts, args.output, args.synth, args.seeds, options, workers=args.workers,
                                ray_address=args.ray, ray_gpus_per_run=args.ray_gpus_per_run,
                                retries=args.retries, voice_fit_steps=args.dx7_fit_steps, progress=not args.quiet)
    except KeyboardInterrupt:
        print("sds-audio: interrupted; finished runs are kept: run the same command again to continue",
              file=sys.stderr)
        return 130
    done = sum(r.status == "done" for r in summary.rows)
    failed = [r for r in summary.rows if r.status == "failed"]
    banks = "".join(f", {p.name}" for p in summary.banks)
    print(f"library {summary.lib_dir}/: {done} of {len(summary.rows)} runs done ({summary.n_run} now, "
          f"{summary.n_skipped} already finished), {len(failed)} failed, {summary.seconds:.0f} s; "
          f"index {LIBRARY_FILE}, {LIBRARY_CSV}{banks}")
    for row in failed[:5]:
        print(f"  failed: {row.prompt!r} seed {row.seed}: {row.error}", file=sys.stderr)
    if failed:
        print(f"sds-audio: {len(failed)} run(s) failed; run the same command again to retry them", file=sys.stderr)
        return 1
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``batch`` to the ``sds-audio`` sub-commands."""
    p = sub.add_parser("batch", help="prompts file -> a preset library: one run directory per (prompt, seed), "
                                     "library.json / library.csv; local worker processes or Ray tasks")
    p.add_argument("prompts", help="UTF-8 text file, one prompt per line (blank lines and # comments skipped)")
    p.add_argument("-o", "--output", required=True,
                   help="library directory (new, empty, or a library to continue: finished runs are skipped)")
    p.add_argument("--synth", default="fm", help="synth type of every run: fm (default), impact, or dx7")
    p.add_argument("--seeds", default="0", help="seeds per prompt: 0,1 or 0-3 (default 0)")
    p.add_argument("--workers", type=int, default=1, help="local worker processes, one torch thread each "
                                                         "(default 1)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run as Ray tasks on an existing cluster: auto or HOST:PORT (needs the 'ray' extra)")
    p.add_argument("--ray-gpus-per-run", type=float, default=0.0, metavar="G",
                   help="with --ray: GPUs each run asks for (default 0: CPU)")
    p.add_argument("--retries", type=int, default=2, help="extra attempts for a failed run (default 2)")
    p.add_argument("--dx7-fit-steps", type=int, default=0, metavar="N",
                   help="fm: also fit a DX7 voice to each preset with N sound-matching steps, for the library's "
                        "DX7 banks bank_NN.syx (default 0: no voices; dx7 libraries always get banks)")
    p.add_argument("--prior", default="embedded",
                   help="embedded (shipped), stable-audio-open, or a prior directory (default: embedded)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimisation steps per run (default: the synth's, 120 for fm / dx7, 150 for impact)")
    p.add_argument("--restarts", type=int, default=None,
                   help="restarts optimised together (default: the synth's, 2 for fm / dx7, 4 for impact)")
    p.add_argument("--duration-s", type=float, default=1.5, help="sound length in seconds (default 1.5)")
    p.add_argument("--lr", type=float, default=0.05, help="Adam learning rate (default 0.05)")
    p.add_argument("--cfg", type=float, default=5.0, help="classifier-free guidance scale (default 5)")
    p.add_argument("--negative", default=None, help="negative prompt")
    p.add_argument("--denoise-steps", type=int, default=4, help="k, denoising steps per SDS update (default 4)")
    p.add_argument("--no-judge", action="store_true", help="do not load the judge (no restart selection by score)")
    p.add_argument("--codec-precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="embedded prior: codec precision (default auto)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda where the worker has it)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_batch)
