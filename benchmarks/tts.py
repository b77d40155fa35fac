"""Speech model benchmark: intelligibility (pocketsphinx WER), voice prompting, speed.

Usage::

    python benchmarks/tts.py --corpus CORPUS_DIR [--weights tts.safetensors] [--codec CODEC] [--split test] [--n 100]
                             [--voices slt,kal16] [--prompts 20] [--adapt-steps N] [--steps 16] [--cfg 2] [--threads 2]
                             [--sections teachers,model,voice,speed] [--builtin-voice] [--out results.json]

``CORPUS_DIR`` is a corpus of ``sds-audio corpus speech`` (its ``speakers.csv``
names the voices and splits). Choose settings on ``--split valid``; report from
``--split test``. Sections:

- ``teachers``: the first ``--n`` sentences of the split. For every voice in
  ``--voices`` and ``--extra-teachers`` (the espeak-ng voices): the recording's WER, and for those in
  ``--roundtrip-voices`` its codec round trip's WER (the ceiling the decoder allows). Recogniser: pocketsphinx 5.x,
  default US English models.
- ``model``: the model's WER on the same sentences, prompted with each voice of
  ``--voices`` (its prompt: the voice's recording of the next sentence), or with
  the built-in voice once (``--builtin-voice``).
- ``voice``: for ``--prompts`` sentences, the model speaks sentence ``i`` in the held-out voice given
  its recording of another sentence (2.5 to 10 s): as an in-context prompt, or with
  ``--adapt-steps N`` through ``SpeechSynthesizer.adapt`` (that recording and its transcript). Each
  output is assigned to the nearest voice by two measures fitted on round trips of every voice's
  recordings of the other split: :class:`~sds_audio.tts.evaluation.VoiceCentroids` (per-band
  log-mel statistics) and :class:`~sds_audio.tts.evaluation.VoiceGMMs` (frame-level MFCC mixtures);
  reports how often that is the held-out voice, the same for the held-out voice's own
  round-tripped recordings (the measures' ceilings), the outputs' WER and the adaptation time.
- ``speed``: load time, then synthesis time / audio duration for a ~5 s sentence
  at the given steps (median wall time of 3 after one warm-up, and the least
  process CPU time: on a shared, loaded machine the CPU time of a one-thread run
  is the best estimate of its uncontended wall time), with ``--threads`` threads.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from sds_audio.audio_io import load_audio
from sds_audio.tts import load_tts
from sds_audio.tts.data import read_ljspeech
from sds_audio.tts.evaluation import VoiceCentroids, VoiceGMMs, recognize, voice_embedding, wer

FIVE_SECOND_SENTENCE = "The quick brown fox jumps over the lazy dog, and then it runs back home to sleep."


def by_voice(corpus: Path, split: str) -> tuple[dict[str, dict[str, Path]], dict[str, str]]:
    """``{voice: {sentence number: wav}}`` and ``{sentence number: text}`` of a split."""
    table: dict[str, dict[str, Path]] = {}
    texts: dict[str, str] = {}
    for u in read_ljspeech(corpus):
        if u.split != split:
            continue
        number = u.id.rsplit("-", 1)[1]
        table.setdefault(u.speaker, {})[number] = u.wav
        texts[number] = u.text
    return table, texts


def roundtrip(tts, wav: Path) -> torch.Tensor:
    audio, _ = load_audio(wav, sample_rate=tts.sample_rate, channels=1)
    with torch.no_grad():
        return tts.features.decode(tts.features.encode(audio))[0, 0, :audio.shape[-1]]


def section_teachers(tts, corpus: Path, args) -> dict:
    """WER of the corpus recordings and of their codec round trips (needs no speech model)."""
    table, texts = by_voice(corpus, args.split)
    numbers = sorted(texts)[:args.n]
    refs = [texts[k] for k in numbers]
    results = {}
    for voice in [v for v in (args.voices + "," + args.extra_teachers).split(",") if v]:
        if voice not in table or voice in results:
            continue
        rec = table[voice]
        results[voice] = {"n_sentences": len(refs)}
        if not args.roundtrip_only:
            teacher = [recognize(*sf.read(str(rec[k]), dtype="float32")) for k in numbers]
            results[voice]["teacher"] = wer(refs, teacher)
        if voice in args.roundtrip_voices.split(","):
            coded = [recognize(roundtrip(tts, rec[k]), tts.sample_rate) for k in numbers]
            results[voice]["codec_roundtrip"] = wer(refs, coded)
        print(f"{voice:>9}  " + "  ".join(f"{k} {v:.3f}" for k, v in results[voice].items() if k != "n_sentences"),
              flush=True)
    return results


def section_model(tts, corpus: Path, args) -> dict:
    """WER of the model prompted with each voice (prompt: that voice's recording of the next sentence)."""
    table, texts = by_voice(corpus, args.split)
    numbers = sorted(texts)[:args.n]
    refs = [texts[k] for k in numbers]
    results = {}
    for voice in [v for v in args.voices.split(",") if v]:
        rec = table[voice]
        hyps = []
        t0 = time.time()
        for i, k in enumerate(numbers):
            prompt = rec[numbers[(i + 1) % len(numbers)]] if args.prompted else None
            audio, rate = tts.speak(texts[k], voice=prompt, steps=args.steps, guidance=args.cfg, seed=i)
            hyps.append(recognize(audio, rate))
            if i < 3 and args.samples:
                sf.write(str(Path(args.samples) / f"{voice}_{k}.wav"), audio.numpy(), rate)
        results[voice] = {"model": wer(refs, hyps), "seconds": time.time() - t0, "n_sentences": len(refs),
                          "examples": [[refs[j], hyps[j]] for j in range(min(5, len(refs)))]}
        print(f"{voice:>9}  model {results[voice]['model']:.3f}  ({results[voice]['seconds']:.0f} s)", flush=True)
        if not args.prompted:
            break
    return results


def section_voice(tts, corpus: Path, args) -> dict:
    info = json.loads((corpus / "corpus.json").read_text())
    heldout = info["heldout_voices"][0]
    table, texts = by_voice(corpus, args.split)
    other = "valid" if args.split == "test" else "test"
    ref_table, _ = by_voice(corpus, other)
    voices = info["train_voices"] + [heldout]
    clips = {v: [roundtrip(tts, w) for w in list(ref_table[v].values())[:args.centroid_clips]] for v in voices}
    centroids = VoiceCentroids({v: np.stack([voice_embedding(c, tts.sample_rate) for c in clips[v]]) for v in voices})
    gmms = VoiceGMMs(clips, tts.sample_rate)
    numbers = sorted(texts)[:args.prompts + 1]
    # prompts: the held-out voice's recordings of other sentences that last 2.5 to 10 s
    long_enough = [k for k in sorted(texts) if 2.5 <= sf.info(str(table[heldout][k])).duration <= 10.0]
    hits, gmm_hits, ceiling, gmm_ceiling, picks, gmm_picks, refs, hyps = 0, 0, 0, 0, [], [], [], []
    adapt_s = []
    if args.samples:
        Path(args.samples).mkdir(parents=True, exist_ok=True)
    for i, k in enumerate(numbers[:-1]):
        p = next(p for p in long_enough[i:] + long_enough if p != k)
        prompt = table[heldout][p]
        if args.adapt_steps:
            t0 = time.perf_counter()
            speaker = tts.adapt(prompt, texts[p], steps=args.adapt_steps, lr=args.adapt_lr)
            adapt_s.append(time.perf_counter() - t0)
            audio, rate = speaker.speak(texts[k], steps=args.steps, guidance=args.cfg, seed=i)
        else:
            audio, rate = tts.speak(texts[k], voice=prompt, steps=args.steps, guidance=args.cfg, seed=i)
        if args.samples:
            sf.write(str(Path(args.samples) / f"voice_{heldout}_{k}.wav"), audio.numpy(), rate)
        nearest, nearest_gmm = centroids.nearest(voice_embedding(audio, rate)), gmms.nearest(audio, rate)
        picks.append(nearest)
        gmm_picks.append(nearest_gmm)
        hits += nearest == heldout
        gmm_hits += nearest_gmm == heldout
        refs.append(texts[k])
        hyps.append(recognize(audio, rate))
        own = roundtrip(tts, table[heldout][k])
        ceiling += centroids.nearest(voice_embedding(own, tts.sample_rate)) == heldout
        gmm_ceiling += gmms.nearest(own, tts.sample_rate) == heldout
    n = len(numbers) - 1
    out = {"heldout_voice": heldout, "prompts": n, "adapt_steps": args.adapt_steps, "adapt_lr": args.adapt_lr,
           "nearest_is_reference": hits / n, "recordings_nearest_is_reference": ceiling / n,
           "gmm_nearest_is_reference": gmm_hits / n, "recordings_gmm_nearest_is_reference": gmm_ceiling / n,
           "picks": {v: picks.count(v) for v in sorted(set(picks))},
           "gmm_picks": {v: gmm_picks.count(v) for v in sorted(set(gmm_picks))},
           "wer": wer(refs, hyps), "adapt_seconds_median": float(np.median(adapt_s)) if adapt_s else 0.0}
    print(f"voice prompting ({heldout}, {n} prompts, adaptation steps {args.adapt_steps}): output nearest to the "
          f"reference voice: centroids {hits}/{n} (its own recordings {ceiling}/{n}; picks {out['picks']}), "
          f"GMMs {gmm_hits}/{n} (its own recordings {gmm_ceiling}/{n}; picks {out['gmm_picks']}); WER of the "
          f"outputs {out['wer']:.3f}; adaptation {out['adapt_seconds_median']:.1f} s median", flush=True)
    return out


def section_speed(args) -> dict:
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    tts = load_tts(args.weights, codec=args.codec)
    load_s = time.perf_counter() - t0
    tts.speak(FIVE_SECOND_SENTENCE, steps=args.steps, guidance=args.cfg)
    runs, cpu, seconds = [], [], 0.0
    for seed in range(3):
        c0, t0 = time.process_time(), time.perf_counter()
        audio, rate = tts.speak(FIVE_SECOND_SENTENCE, steps=args.steps, guidance=args.cfg, seed=seed)
        runs.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        seconds = audio.shape[-1] / rate
    out = {"threads": args.threads, "load_s": load_s, "audio_s": seconds, "synthesis_s": statistics.median(runs),
           "rtf": statistics.median(runs) / seconds, "cpu_s": min(cpu), "cpu_rtf": min(cpu) / seconds,
           "steps": args.steps, "cfg": args.cfg}
    print(f"speed ({args.threads} threads, {args.steps} steps, cfg {args.cfg}): load {load_s:.2f} s; "
          f"{seconds:.2f} s of audio in {out['synthesis_s']:.2f} s wall (RTF {out['rtf']:.3f}), "
          f"{out['cpu_s']:.2f} s process CPU (CPU-time RTF {out['cpu_rtf']:.3f})", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", required=True)
    p.add_argument("--weights", default=None)
    p.add_argument("--codec", default=None, help="codec .safetensors to decode with (default: the weights' own)")
    p.add_argument("--split", default="test", choices=("valid", "test"))
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--voices", default="slt,kal16,awb,kal")
    p.add_argument("--extra-teachers", default="espeak-m,espeak-f",
                   help="teachers section: more voices of the corpus to recognise (espeak-ng by default)")
    p.add_argument("--roundtrip-voices", default="slt,kal16", help="teachers section: voices whose codec round "
                                                                    "trip is also recognised")
    p.add_argument("--roundtrip-only", action="store_true", help="teachers section: only the codec round trips")
    p.add_argument("--prompts", type=int, default=20)
    p.add_argument("--centroid-clips", type=int, default=20)
    p.add_argument("--adapt-steps", type=int, default=0,
                   help="voice section: adapt to each reference for N steps (0: in-context prompt only)")
    p.add_argument("--adapt-lr", type=float, default=None, help="voice section: adaptation step size")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--cfg", type=float, default=2.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sections", default="teachers,model,voice,speed")
    p.add_argument("--builtin-voice", dest="prompted", action="store_false",
                   help="model section: speak with the built-in voice instead of each voice's prompt")
    p.add_argument("--samples", default=None, help="directory for a few example outputs")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    sections = args.sections.split(",")
    if args.samples:
        Path(args.samples).mkdir(parents=True, exist_ok=True)
    results = {"command": " ".join(sys.argv), "date": time.strftime("%Y-%m-%d %H:%M")}
    if "speed" in sections:
        results["speed"] = section_speed(args)
    torch.set_num_threads(args.threads)
    tts = load_tts(args.weights, codec=args.codec)
    corpus = Path(args.corpus)
    if "teachers" in sections:
        results["teachers"] = section_teachers(tts, corpus, args)
    if "model" in sections:
        results["model"] = section_model(tts, corpus, args)
    if "voice" in sections:
        results["voice"] = section_voice(tts, corpus, args)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
