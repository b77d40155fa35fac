"""Do attribute words still steer the embedded flow prior? One table per ``EmbeddedPrior`` anchor mode.

For every pitched instrument concept of the corpus (SoundFont keyboards, organs, mallets,
plucked and bowed strings, basses, guitars, brass, woodwinds) the script generates
``--gens`` clips from each side of three attribute pairs, with the same seeds on both sides
and in every mode, and measures the difference "second side minus first side":

* register: ``"X note, low-pitched"`` vs ``"X note, high-pitched"``; median spectral centroid
  over frames (torchaudio), in octaves;
* dynamics: ``"a soft X note"`` vs ``"a loud X note"``; RMS level in dB;
* space: ``"X note, dry"`` vs ``"X note, with reverb"``; energy after the first 0.5 s as a share
  of the clip's energy, in dB (a reverb tail raises it).

A mode that follows an attribute moves most concepts in the right direction (share > 0.5)
by a clear margin. These are crude acoustic measures, not a judge of the attribute: they
compare modes on the same seeds, they do not certify that a clip "sounds loud".

Usage::

    python benchmarks/flow_attributes.py [--anchor centroid caption] [--gens 4] [--seconds 1.5]
        [--limit-concepts K] [--corpus DIR] [--flow FLOW.safetensors] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torchaudio
from tqdm.auto import tqdm

import embedded_stack as es
from sds_audio.errors import SDSAudioError

#: concept families (``concepts.json``) whose clips are single pitched notes
PITCHED_FAMILIES = ("keyboard", "organ", "mallet percussion", "plucked strings", "bass", "bowed strings", "guitar",
                    "brass", "woodwind")
#: attribute -> (first side, second side); ``{}`` is the concept's canonical prompt
ATTRIBUTE_PAIRS = {"register": ("{}, low-pitched", "{}, high-pitched"), "dynamics": ("a soft {}", "a loud {}"),
                   "space": ("{}, dry", "{}, with reverb")}
UNITS = {"register": "octaves", "dynamics": "dB", "space": "dB"}
TAIL_S = 0.5


def attribute_measure(audio: torch.Tensor, kind: str, sample_rate: int) -> torch.Tensor:
    """``(B, 1, T)`` audio -> ``(B,)`` measure of attribute ``kind`` (see the module docstring)."""
    x = audio[:, 0].float()
    if kind == "register":
        centroid_hz = torchaudio.transforms.SpectralCentroid(sample_rate, n_fft=2048)(x)
        return torch.log2(torch.nan_to_num(centroid_hz, nan=1.0).clamp_min(1.0)).median(-1).values
    if kind == "dynamics":
        return 10 * torch.log10(x.pow(2).mean(-1).clamp_min(1e-10))
    if kind == "space":
        energy = x.pow(2)
        tail = energy[:, int(TAIL_S * sample_rate):].sum(-1)
        return 10 * torch.log10(tail.clamp_min(1e-10) / energy.sum(-1).clamp_min(1e-10))
    raise SDSAudioError(f"unknown attribute {kind!r}; one of {', '.join(ATTRIBUTE_PAIRS)}")


def pitched_prompts(corpus_root: str | Path) -> list[str]:
    """Canonical prompts of the corpus's pitched instrument concepts, in ``concepts.json`` order."""
    path = Path(corpus_root) / "concepts.json"
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SDSAudioError(f"cannot read {path}: {exc}") from exc
    prompts = [e["prompt"] for e in entries if e.get("source") == "soundfont" and e.get("family") in PITCHED_FAMILIES]
    if not prompts:
        raise SDSAudioError(f"{path} lists no pitched instrument concepts")
    return prompts


def summarise(diffs: list[float]) -> dict[str, float]:
    """Mean, median and share of positive differences."""
    d = torch.tensor(diffs)
    return {"mean": float(d.mean()), "median": float(d.median()), "share_positive": float((d > 0).float().mean()),
            "n": len(diffs)}


def main() -> int:
    d = es.generation_defaults()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(es.DEFAULT_CORPUS))
    p.add_argument("--codec", default=None)
    p.add_argument("--flow", default=None)
    p.add_argument("--anchor", nargs="+", default=["caption", "centroid"], choices=es.ANCHOR_MODES)
    p.add_argument("--gens", type=int, default=4, help="generations per side of each pair and concept")
    p.add_argument("--seconds", type=float, default=1.5)
    p.add_argument("--limit-concepts", type=int, default=None, help="the first K pitched concepts (quick runs)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        if args.gens < 1:
            raise SDSAudioError(f"--gens must be >= 1, got {args.gens}")
        from sds_audio.text import TextEncoder

        paths = es.resolve_weight_paths(None, args.codec, args.flow)
        text_encoder = TextEncoder()
        codec, _ = es.load_codec_weights(paths["codec"])
        prompts = pitched_prompts(args.corpus)[:args.limit_concepts]
        started = time.perf_counter()
        for mode in args.anchor:
            prior = es.build_prior(codec, paths["flow"], text_encoder, anchor=mode)
            results[mode] = {}
            for kind, (low, high) in ATTRIBUTE_PAIRS.items():
                diffs = []
                for i, prompt in enumerate(tqdm(prompts, desc=f"{mode}: {kind}")):
                    seeds = [1000 + 10 * i + k for k in range(args.gens)]
                    audio = es.generate_batch(prior, [low.format(prompt)] * args.gens + [high.format(prompt)] * args.gens,
                                              args.seconds, seeds + seeds, steps=d["steps"], cfg=d["cfg"],
                                              sway_coef=d["sway_coef"], method=d["method"])
                    m = attribute_measure(audio, kind, prior.sample_rate)
                    diffs.append(float(m[args.gens:].mean() - m[:args.gens].mean()))
                results[mode][kind] = summarise(diffs)
    except SDSAudioError as exc:
        print(f"flow attributes: error: {exc}", file=sys.stderr)
        return 1
    n = len(prompts)
    print(f"\n### Attribute steering ({n} pitched concepts x {args.gens} generations per side, {args.seconds:g} s, "
          f"same seeds in every mode; {time.perf_counter() - started:.0f} s)\n")
    print("| attribute (second side minus first) | unit | " + " | ".join(
        f"`anchor=\"{m}\"` mean / median / share > 0" for m in args.anchor) + " |")
    print("|---|---|" + "---|" * len(args.anchor))
    for kind, (low, high) in ATTRIBUTE_PAIRS.items():
        cells = [f"{r['mean']:+.2f} / {r['median']:+.2f} / {100 * r['share_positive']:.0f} %"
                 for r in (results[m][kind] for m in args.anchor)]
        print(f"| {kind}: \"{high.format('X')}\" vs \"{low.format('X')}\" | {UNITS[kind]} | " + " | ".join(cells) + " |")
    if args.json:
        from sds_audio.atomic import write_json_atomic

        write_json_atomic(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
