"""How surely the embedded prior's prompt anchor reads prompts: the basis of the weak-reading warning.

Prints, for the corpus's first paraphrase set (the validation set of this choice: every concept's
held-out paraphrases) and for a list of prompts naming sounds the prior was never trained on, the
share of readings flagged weak for each candidate pair of thresholds (classifier probability,
similarity to the nearest training caption). ``LOW_CONFIDENCE`` / ``LOW_SIMILARITY`` in
:mod:`sds_audio.priors.prompt_reading` are chosen from this table: flag few correct readings of
paraphrases and most off-list prompts.

Usage: ``python benchmarks/prompt_reading.py``
"""

from __future__ import annotations

import argparse

import torch

#: sounds outside the embedded prior's 98 concepts (none of them a corpus concept or a synonym of one)
OFF_LIST_PROMPTS = (
    "a dog barking", "a baby crying", "a man speaking", "a cat meowing", "footsteps on gravel",
    "a door slamming", "a toilet flushing", "a cow mooing", "a train horn", "quantum tax form",
    "glass shattering", "a camera shutter", "a coin dropping", "a sneeze", "typing on a keyboard",
    "a chainsaw", "a vacuum cleaner", "a rooster crowing", "a ticking clock", "frogs croaking",
)


def main(argv: list[str] | None = None) -> None:
    from sds_audio.corpus.captions import paraphrases
    from sds_audio.corpus.concepts import CONCEPTS
    from sds_audio.priors.registry import load_prior

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--confidence", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--similarity", type=float, nargs="+", default=[0.5, 0.6, 0.7])
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    prior = load_prior("embedded", device="cpu")
    correct, wrong = [], []
    for concept in CONCEPTS:
        for text in paraphrases(concept):
            reading = prior.read_prompt(text)
            (correct if reading.concept == concept.name else wrong).append(reading)
    off = [prior.read_prompt(t) for t in OFF_LIST_PROMPTS]
    n = len(correct) + len(wrong)
    print(f"paraphrases: {n}, read as their concept: {len(correct) / n:.1%}; off-list prompts: {len(off)}")
    print("| min probability | min similarity | correct paraphrases flagged | wrong paraphrases flagged | "
          "off-list prompts flagged |")
    print("|---|---|---|---|---|")
    for conf in args.confidence:
        for sim in args.similarity:
            def flagged(readings):
                return sum(r.confidence < conf or r.similarity < sim for r in readings) / max(1, len(readings))
            print(f"| {conf:.2f} | {sim:.2f} | {flagged(correct):.1%} | {flagged(wrong):.1%} | {flagged(off):.1%} |")


if __name__ == "__main__":
    main()
