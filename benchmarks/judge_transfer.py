"""Judges against each other's data: is the independent judge a fair grader of the embedded prior?

Evaluates each judge's zero-shot top-1 (the clip's concept among all concepts' canonical prompts,
and among held-out paraphrases) on three sets:

* ``judge-validation``: the held-out split of the independent judge's corpus (``sds-audio corpus build
  DIR --judge``): ten General MIDI programs never trained on plus a held-out share of every concept
  (MuseScore General; the independent judge's own validation set);
* ``fluidr3``: FluidR3 renders drawn with a seed neither judge nor prior trained on (``build_corpus(DIR,
  seed=7, n_per_concept=6, heldout_fraction=0)``): the SoundFont the prior learned from;
* ``prior-heldout`` (optional, ``--prior-corpus``): the held-out split of the prior's own corpus.

A fair grader must transfer across SoundFonts: its FluidR3 accuracy should stay close to its accuracy
on its own SoundFont.

Usage: ``python benchmarks/judge_transfer.py --judge-corpus DIR --fluidr3 DIR [--judges A.safetensors ...]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

ASSETS = Path(__file__).resolve().parent.parent / "sds_audio" / "assets"


def main(argv: list[str] | None = None) -> None:
    from sds_audio.judge import evaluate_judge, load_judge

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--judge-corpus", type=Path, required=True)
    parser.add_argument("--fluidr3", type=Path, required=True)
    parser.add_argument("--prior-corpus", type=Path, default=None)
    parser.add_argument("--judges", type=Path, nargs="+",
                        default=[ASSETS / "independent_judge.safetensors", ASSETS / "judge.safetensors"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sets = [("judge-validation", args.judge_corpus, "heldout"), ("fluidr3", args.fluidr3, "all")]
    if args.prior_corpus is not None:
        sets.append(("prior-heldout", args.prior_corpus, "heldout"))
    print("| judge | set | clips | top-1 (canonical prompts) | top-1 (paraphrases) |")
    print("|---|---|---|---|---|")
    for path in args.judges:
        judge = load_judge(path)
        for name, root, split in sets:
            res = evaluate_judge(root, judge, split=split, progress=False)
            para = "-" if res["paraphrase_top1"] is None else f"{100 * res['paraphrase_top1']:.1f} %"
            print(f"| {path.name} | {name} | {res['n_clips']} | {100 * res['top1']:.1f} % | {para} |", flush=True)


if __name__ == "__main__":
    main()
