"""Embedded stack benchmark: judge, codec, flow prior and SDS-step speed against the bars of issue #4.

Usage::

    python benchmarks/embedded_stack.py [--corpus /work/data/corpus] [--assets DIR]
        [--codec PATH] [--flow PATH] [--judge PATH] [--sections judge,codec,flow,speed]
        [--gens-per-concept 8] [--seed 0] [--limit-concepts K] [--json OUT.json]
        [--threads 2] [--steps 32] [--cfg 4.0] [--seconds typical|S] [--repeats 20]
        [--save-audio DIR] [--text-condition prompt|pooled|known-tokens|nearest-caption]
        [--no-progress]

Weights come from ``--assets DIR`` (``codec.safetensors``, ``flow.safetensors``,
``judge.safetensors``; default ``sds_audio/assets``); ``--codec`` / ``--flow`` /
``--judge`` override single files. ``--codec`` may also name a codec *training
checkpoint* (``checkpoint.safetensors`` of ``sds-audio train codec``): its codec
weights are used and the output says so. A missing file ends the run before any
work with one line naming it and the command that trains it (exit status 1).

Sections (each prints a markdown table and PASS / FAIL against its bar):

1. ``judge``: zero-shot top-1 concept accuracy of the judge on the held-out
   clips (:func:`sds_audio.judge.evaluate_judge`: whole clips, the concept whose
   canonical prompt scores highest), and the same with the concepts' held-out
   paraphrases. Bar: canonical top-1 >= 80 %. The paraphrase number is reported
   beside it without a bar. This section always scores every held-out clip.
2. ``codec``: every held-out clip is encoded and decoded (posterior mean; all
   codebooks for an RVQ codec) and the judge classifies reconstructions and
   originals the same way. Bar: reconstruction top-1 >= 90 % of original top-1.
   Also the median multi-resolution STFT distance
   (:class:`sds_audio.spectral.MultiResolutionSTFTDistance`, log + linear
   magnitudes, FFT 512-4096) and SI-SDR (:func:`sds_audio.metrics.si_sdr`) of
   the reconstructions, and the compression factor (audio samples per second
   over latent values per second, ``latent_channels * frames per second``).
3. ``flow``: for every concept, ``--gens-per-concept`` generations from its
   canonical prompt and as many from its held-out paraphrases (generation ``i``
   uses paraphrase ``i mod n``). The judge classifies each among *all*
   concepts' canonical prompts. Bars: canonical >= 70 %, paraphrases >= 60 %.
   KAD (:func:`sds_audio.metrics.kad`, judge audio embeddings, RBF kernel with
   the median bandwidth, x1000) between the generations and the held-out real
   clips, beside the KAD between real training clips (``--gens-per-concept``
   per concept, seeded draw) and the same held-out clips. Durations: with
   ``--seconds typical`` (default) each concept is generated at the median
   length of its training clips (clamped to [0.5 s, the flow model's window]);
   ``--seconds S`` uses S seconds for every concept. Sampling is what
   ``sds-audio generate`` does (:func:`sds_audio.flow.generate`: Euler steps on
   a sway-warped grid, classifier-free guidance), batched: every generation has
   its own seed, so row ``i`` equals ``generate(prompt, seed=seed_i)``.
4. ``speed``: one SDS prior call through :class:`~sds_audio.priors.embedded.EmbeddedPrior`
   on a 1.5 s clip: encode, add noise at ``t = 0.6``, 4-step guided denoise
   (CFG 4, conditioning cached as in SDS), decode. Median wall time over
   ``--repeats`` (>= 10) runs after 3 warm-up runs, on ``--threads`` threads
   (default 2). Bar: <= 150 ms. Also the median of each stage and the median
   process CPU time (on a machine shared with other jobs wall time is inflated;
   CPU time is what the call costs).

``--limit-concepts K`` keeps K concepts spread evenly over ``concepts.json``
(so both the SoundFont and the procedural families stay in) for quick runs. The
sections then use only those concepts' clips and generations, but the judge
still chooses among *all* concepts, so accuracies stay comparable to a full run.
"""

from __future__ import annotations

import argparse
import inspect
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.priors.embedded import ANCHOR_MODES

DEFAULT_CORPUS = Path("/work/data/corpus")
SECTIONS = ("judge", "codec", "flow", "speed")
CODEC_FILE, FLOW_FILE, JUDGE_FILE = "codec.safetensors", "flow.safetensors", "judge.safetensors"
TRAIN_COMMANDS = {
    "codec": "sds-audio train codec --corpus CORPUS_DIR --out OUT_DIR",
    "flow": "sds-audio train flow --corpus CORPUS_DIR --out OUT_DIR --codec CODEC.safetensors",
    "judge": "sds-audio train judge --corpus CORPUS_DIR --out OUT_DIR",
}
#: which weights each section needs
NEEDS = {"judge": ("judge",), "codec": ("codec", "judge"), "flow": ("codec", "flow", "judge"),
         "speed": ("codec", "flow")}

JUDGE_BAR = 0.80            # held-out canonical top-1
CODEC_RATIO_BAR = 0.90      # reconstruction top-1 / original top-1
FLOW_CANONICAL_BAR = 0.70   # generations from canonical prompts, judge top-1
FLOW_PARAPHRASE_BAR = 0.60  # generations from held-out paraphrases, judge top-1
SPEED_BAR_MS = 150.0        # encode + 4-step CFG denoise + decode, 1.5 s clip, median wall ms

SPEED_PROMPT = "kick drum, punchy, short"
MIN_GEN_SECONDS = 0.5


# --------------------------------------------------------------------------- corpus
@dataclass
class CorpusInfo:
    """A corpus directory's concepts and clip records.

    Attributes:
        root: the directory.
        concepts: concept names in ``concepts.json`` order (the judge's class order).
        prompts: canonical prompt of each concept (the concept's name when it has none).
        paraphrases: held-out paraphrases of each concept (may be empty lists).
        records: every ``manifest.jsonl`` record.
    """

    root: Path
    concepts: list[str]
    prompts: list[str]
    paraphrases: list[list[str]]
    records: list[dict[str, Any]]

    @property
    def index(self) -> dict[str, int]:
        return {c: i for i, c in enumerate(self.concepts)}


def read_corpus(root: str | Path) -> CorpusInfo:
    """Read ``manifest.jsonl`` and ``concepts.json`` (SDSAudioError when missing or broken)."""
    from sds_audio.corpus.dataset import read_concepts, read_manifest

    root = Path(root)
    records = read_manifest(root)
    entries = read_concepts(root)
    return CorpusInfo(root=root, concepts=[e["concept"] for e in entries],
                      prompts=[e.get("prompt") or e["concept"] for e in entries],
                      paraphrases=[[p for p in e.get("paraphrases", []) if p.strip()] for e in entries],
                      records=records)


#: ``--paraphrase-set``: which of each concept's held-out paraphrases (``captions.paraphrases(c, 16)``) to use.
#: ``corpus`` is the four in concepts.json; ``second`` a confirmation set; ``validation`` the set design
#: choices are made on (8 per concept), so that neither benchmark set is fitted.
PARAPHRASE_SETS = {"corpus": slice(0, 4), "second": slice(4, 8), "validation": slice(8, 16)}


def paraphrase_set(concepts: Sequence[str], name: str) -> list[list[str]]:
    """Each concept's paraphrases of set ``name`` (see :data:`PARAPHRASE_SETS`)."""
    from sds_audio.corpus.captions import paraphrases
    from sds_audio.corpus.concepts import concept_by_name

    if name not in PARAPHRASE_SETS:
        raise SDSAudioError(f"--paraphrase-set must be one of {', '.join(PARAPHRASE_SETS)}, got {name!r}")
    return [paraphrases(concept_by_name(c), 16)[PARAPHRASE_SETS[name]] for c in concepts]


def select_concepts(n_concepts: int, limit: int | None) -> list[int]:
    """Indices of ``limit`` concepts spread evenly over ``range(n_concepts)`` (all of them for None)."""
    if limit is None or limit >= n_concepts:
        return list(range(n_concepts))
    if limit < 1:
        raise SDSAudioError(f"--limit-concepts must be >= 1, got {limit}")
    return sorted({int(round(x)) for x in np.linspace(0, n_concepts - 1, limit)})


def load_clips(corpus: CorpusInfo, split: str, concept_ids: Sequence[int], sample_rate: int,
               per_concept: int | None = None, seed: int = 0) -> tuple[list[torch.Tensor], list[int]]:
    """Whole clips of ``split`` belonging to ``concept_ids``.

    Args:
        per_concept: keep at most this many clips per concept, drawn with a
            generator seeded by ``seed`` (None: every clip).

    Returns:
        ``(clips, concept_index)``: each clip ``(1, 1, T)`` float32 mono at ``sample_rate``,
        and its concept's position in ``corpus.concepts``.
    """
    from sds_audio.corpus.dataset import CorpusDataset

    data = CorpusDataset(corpus.root, split=split, segment_s=None, sample_rate=sample_rate)
    wanted = set(concept_ids)
    by_concept: dict[int, list[int]] = {}
    for i, rec in enumerate(data.records):
        c = corpus.index[rec["concept"]]
        if c in wanted:
            by_concept.setdefault(c, []).append(i)
    if per_concept is not None:
        rng = np.random.default_rng([seed, 7])
        by_concept = {c: sorted(rng.choice(ids, size=min(per_concept, len(ids)), replace=False).tolist())
                      for c, ids in sorted(by_concept.items())}
    order = sorted(i for ids in by_concept.values() for i in ids)
    clips = [torch.from_numpy(data.load(i)).view(1, 1, -1) for i in order]
    return clips, [corpus.index[data.records[i]["concept"]] for i in order]


def typical_seconds(corpus: CorpusInfo, concept: int, max_s: float, min_s: float = MIN_GEN_SECONDS) -> float:
    """Median ``duration_s`` of the concept's training clips (all clips if none), clamped to [min_s, max_s]."""
    name = corpus.concepts[concept]
    durations = [float(r["duration_s"]) for r in corpus.records
                 if r["concept"] == name and r["split"] == "train" and "duration_s" in r]
    if not durations:
        durations = [float(r["duration_s"]) for r in corpus.records if r["concept"] == name and "duration_s" in r]
    seconds = statistics.median(durations) if durations else max_s
    return float(min(max(seconds, min(min_s, max_s)), max_s))


# --------------------------------------------------------------------------- weights
def resolve_weight_paths(assets: str | Path | None, codec: str | Path | None = None, flow: str | Path | None = None,
                         judge: str | Path | None = None) -> dict[str, Path]:
    """``{"codec", "flow", "judge"}`` paths: explicit files first, else ``assets`` (default: the package's assets)."""
    if assets is None:
        from sds_audio.priors.embedded import default_assets_dir

        assets = default_assets_dir()
    folder = Path(assets)
    return {"codec": Path(codec) if codec else folder / CODEC_FILE,
            "flow": Path(flow) if flow else folder / FLOW_FILE,
            "judge": Path(judge) if judge else folder / JUDGE_FILE}


def missing_weights(paths: dict[str, Path], sections: Sequence[str]) -> list[str]:
    """One line per weights file the chosen sections need and that does not exist."""
    needed = [w for w in ("codec", "flow", "judge") if any(w in NEEDS[s] for s in sections)]
    return [f"missing {w} weights: {paths[w]} does not exist; train them with `{TRAIN_COMMANDS[w]}` and pass "
            f"OUT_DIR/{w}.safetensors with --{w} (or put it in --assets)" for w in needed if not paths[w].is_file()]


def load_codec_weights(path: str | Path) -> tuple[torch.nn.Module, str]:
    """A frozen codec from final weights or from a codec training checkpoint.

    Returns:
        ``(codec, source)`` where ``source`` says which kind of file it was.
    """
    from safetensors import SafetensorError, safe_open

    from sds_audio.codec import Codec, load_codec

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            fmt = (fh.metadata() or {}).get("format")
    except (SafetensorError, OSError, ValueError) as exc:
        raise SDSAudioError(f"codec weights {path} are not a readable .safetensors file ({exc}); "
                            f"train them with `{TRAIN_COMMANDS['codec']}`", exit_code=1) from exc
    from sds_audio.codec.checkpoint import FORMAT_NAME as CHECKPOINT_FORMAT

    if fmt == CHECKPOINT_FORMAT:
        from sds_audio.codec.checkpoint import read_checkpoint
        from sds_audio.codec.io import config_from_metadata, load_state_checked

        tensors, metadata = read_checkpoint(path)
        codec = Codec(config_from_metadata(path, metadata))
        load_state_checked(codec, {k[len("codec."):]: v for k, v in tensors.items() if k.startswith("codec.")}, path)
        source = f"training checkpoint, step {metadata.get('step', '?')} (not final weights)"
    else:
        codec = load_codec(path)
        source = "weights"
    return codec.eval().requires_grad_(False), source


def build_prior(codec: torch.nn.Module, flow_path: str | Path, text_encoder: Any = None, anchor: str = "centroid"):
    """:class:`EmbeddedPrior` over ``codec`` and the flow model at ``flow_path`` (``anchor``: see EmbeddedPrior).

    Raises:
        SDSAudioError: the flow model was trained on another codec (its metadata's fingerprint differs).
    """
    from sds_audio.flow.weights import load_flow
    from sds_audio.priors.embedded import EmbeddedPrior, check_flow_codec

    flow = load_flow(flow_path)
    check_flow_codec(flow_path, codec, "the codec given")
    return EmbeddedPrior(codec, flow, text_encoder=text_encoder, codec_precision="float32", anchor=anchor)


# --------------------------------------------------------------------------- judge helpers
@torch.no_grad()
def embed_clips(judge, clips: Sequence[torch.Tensor], sample_rate: int, batch_size: int = 32,
                desc: str | None = None) -> torch.Tensor:
    """Judge embeddings ``(N, embed_dim)`` of whole clips (each ``(1, C, T)``), the protocol of ``evaluate_judge``.

    Clips shorter than the judge's ``segment_s`` are zero-padded to it, longer
    ones pooled over their whole length; clips of equal length share a batch.
    ``desc``: show a progress bar with this label (None: no bar).
    """
    from tqdm.auto import tqdm

    if not clips:
        return torch.zeros(0, judge.config.embed_dim)
    by_length: dict[int, list[int]] = {}
    for i, clip in enumerate(clips):
        by_length.setdefault(int(clip.shape[-1]), []).append(i)
    batches = [ids[s:s + batch_size] for ids in by_length.values() for s in range(0, len(ids), batch_size)]
    out: list[torch.Tensor | None] = [None] * len(clips)
    for part in tqdm(batches, desc=desc, disable=desc is None, leave=False):
        emb = judge.embed_audio(torch.cat([clips[i] for i in part]), sample_rate).float().cpu()
        for i, e in zip(part, emb):
            out[i] = e
    return torch.stack(out)


def top1(embeddings: torch.Tensor, truth: Sequence[int], prompt_embeddings: torch.Tensor) -> torch.Tensor:
    """Bool ``(N,)``: is the best-scoring prompt (cosine similarity) the clip's own concept?"""
    if embeddings.shape[0] == 0:
        return torch.zeros(0, dtype=torch.bool)
    return (embeddings @ prompt_embeddings.T).argmax(dim=1) == torch.as_tensor(list(truth))


def _rate(x: torch.Tensor) -> float | None:
    return float(x.float().mean()) if x.numel() else None


def per_concept_rates(correct: torch.Tensor, truth: Sequence[int], names: Sequence[str]) -> dict[str, float]:
    """Accuracy per concept name."""
    truth_t = torch.as_tensor(list(truth))
    return {names[c]: float(correct[truth_t == c].float().mean()) for c in sorted(set(truth_t.tolist()))}


class Bench:
    """What the sections share: the corpus, the judge, the concepts under test, cached embeddings.

    Args:
        corpus: the corpus.
        judge: a frozen :class:`sds_audio.judge.JudgeModel`.
        concept_ids: concepts under test (positions in ``corpus.concepts``).
        seed: seeds the training-clip draw and the generations.
        progress: show tqdm bars.
    """

    def __init__(self, corpus: CorpusInfo, judge, concept_ids: Sequence[int], seed: int = 0, progress: bool = True):
        self.corpus = corpus
        self.judge = judge.eval()
        self.concept_ids = list(concept_ids)
        self.seed = int(seed)
        self.progress = progress
        self._cache: dict[Any, Any] = {}

    @property
    def sample_rate(self) -> int:
        return int(self.judge.config.sample_rate)

    @torch.no_grad()
    def prompt_embeddings(self) -> torch.Tensor:
        """``(K, embed_dim)`` judge text embeddings of every concept's canonical prompt."""
        if "prompts" not in self._cache:
            self._cache["prompts"] = self.judge.embed_text(self.corpus.prompts).float().cpu()
        return self._cache["prompts"]

    def real(self, split: str, per_concept: int | None = None) -> tuple[list[torch.Tensor], list[int], torch.Tensor]:
        """``(clips, concept_index, embeddings)`` of real clips of the concepts under test (cached)."""
        key = ("real", split, per_concept)
        if key not in self._cache:
            clips, truth = load_clips(self.corpus, split, self.concept_ids, self.sample_rate, per_concept, self.seed)
            desc = f"judge: embed real {split} clips" if self.progress else None
            self._cache[key] = (clips, truth, embed_clips(self.judge, clips, self.sample_rate, desc=desc))
        return self._cache[key]


# --------------------------------------------------------------------------- 1. judge
def judge_section(bench: Bench) -> dict[str, Any]:
    """Held-out zero-shot top-1 (canonical prompts and paraphrases) through :func:`evaluate_judge`."""
    from sds_audio.judge import evaluate_judge

    res = evaluate_judge(bench.corpus.root, bench.judge, split="heldout", progress=bench.progress)
    per = res["per_concept_top1"]
    return {"n_clips": res["n_clips"], "n_concepts": len(per), "top1": res["top1"],
            "paraphrase_top1": res["paraphrase_top1"], "bar_top1": JUDGE_BAR,
            "pass": res["top1"] is not None and res["top1"] >= JUDGE_BAR,
            "weakest": sorted(per.items(), key=lambda kv: (kv[1], kv[0]))[:5]}


# --------------------------------------------------------------------------- 2. codec
@torch.no_grad()
def codec_section(bench: Bench, codec: torch.nn.Module) -> dict[str, Any]:
    """Reconstruct the held-out clips; judge top-1 on reconstructions vs originals, STFT distance, SI-SDR."""
    from tqdm.auto import tqdm

    from sds_audio.audio_io import match_channels, resample
    from sds_audio.metrics import si_sdr
    from sds_audio.spectral import MultiResolutionSTFTDistance

    clips, truth, emb_orig = bench.real("heldout")
    sr = int(codec.sample_rate)
    stft = MultiResolutionSTFTDistance()
    distances, sisdrs, recons = [], [], []
    started = time.perf_counter()
    for clip in tqdm(clips, desc="codec: reconstruct held-out clips", disable=not bench.progress, leave=False):
        audio = match_channels(resample(clip, bench.sample_rate, sr), int(codec.channels))
        recon = codec.reconstruct(audio)
        distances.append(float(stft(recon, audio)[0]))
        sisdrs.append(float(si_sdr(recon, audio)[0]))
        recons.append(recon)
    seconds = time.perf_counter() - started
    emb_recon = embed_clips(bench.judge, recons, sr, desc="judge: embed reconstructions" if bench.progress else None)
    prompts = bench.prompt_embeddings()
    ok_orig, ok_recon = top1(emb_orig, truth, prompts), top1(emb_recon, truth, prompts)
    agree = (emb_orig @ prompts.T).argmax(1) == (emb_recon @ prompts.T).argmax(1)
    acc_orig, acc_recon = _rate(ok_orig), _rate(ok_recon)
    ratio = acc_recon / acc_orig if acc_orig else None
    names = bench.corpus.concepts
    per_orig, per_recon = per_concept_rates(ok_orig, truth, names), per_concept_rates(ok_recon, truth, names)
    drops = sorted(((per_orig[c] - per_recon[c], c) for c in per_orig), reverse=True)
    latent_rate = sr / int(codec.hop_length)
    latent_values_per_s = int(codec.latent_channels) * latent_rate
    return {"n_clips": len(clips), "audio_seconds": sum(c.shape[-1] for c in clips) / bench.sample_rate,
            "top1_original": acc_orig, "top1_reconstruction": acc_recon, "ratio": ratio,
            "prediction_agreement": _rate(agree), "bar_ratio": CODEC_RATIO_BAR,
            "pass": ratio is not None and ratio >= CODEC_RATIO_BAR,
            "stft_distance_median": statistics.median(distances) if distances else None,
            "si_sdr_db_median": statistics.median(sisdrs) if sisdrs else None,
            "sample_rate": sr, "channels": int(codec.channels), "hop_length": int(codec.hop_length),
            "latent_channels": int(codec.latent_channels), "latent_rate_hz": latent_rate,
            "latent_values_per_s": latent_values_per_s,
            "compression_factor": sr * int(codec.channels) / latent_values_per_s,
            "reconstruct_seconds": seconds,
            "largest_drops": [(c, per_orig[c], per_recon[c]) for d, c in drops[:8] if d > 0]}


# --------------------------------------------------------------------------- 3. flow
def generation_seed(seed: int, concept: int, kind: int, i: int) -> int:
    """Seed of generation ``i`` of ``concept`` (``kind`` 0: canonical prompt, 1: paraphrases).

    A function of these four numbers only, so ``--limit-concepts`` and batching
    do not change any single generation.
    """
    return int(np.random.SeedSequence([seed, concept, kind, i]).generate_state(1, np.uint64)[0] % (2 ** 63))


def generation_defaults() -> dict[str, Any]:
    """``steps``, ``cfg``, ``sway_coef``, ``method`` defaults of :func:`sds_audio.flow.generate`."""
    from sds_audio.flow import generate

    params = inspect.signature(generate).parameters
    return {k: params[k].default for k in ("steps", "cfg", "sway_coef", "method")}


#: probes that pick the caption a concept classifier (the library's PromptAnchor) reads off the prompt
ANCHORED_CONDITIONS = ("concept-caption", "concept-pooled", "concept-both", "concept-centroid")
TEXT_CONDITIONS = ("prompt", "pooled", "known-tokens", "nearest-caption") + ANCHORED_CONDITIONS


class TextVariant:
    """What the flow model's conditional branch reads for a prompt (``--text-condition``; a probe, not a
    library feature):

    * ``prompt``: the prompt as :func:`sds_audio.flow.generate` encodes it (the default);
    * ``pooled``: its pooled embedding alone, the tokens hidden as token dropout does in training;
    * ``known-tokens``: cross-attention only to the word pieces that occur in some training caption
      (the pooled embedding still covers the whole prompt);
    * ``nearest-caption``: the training caption whose MiniLM pooled embedding is nearest the prompt's;
    * ``concept-caption``: a :class:`~sds_audio.flow.anchor.PromptAnchor` fitted on the training captions
      picks the concept's training caption nearest the prompt, which replaces the prompt;
    * ``concept-pooled``: the same caption's pooled embedding, with the prompt's own tokens.
    * ``concept-both``: that pooled embedding; cross-attention to the caption's tokens followed by the prompt's
      (what :class:`EmbeddedPrior` does with ``anchor="caption"``);
    * ``concept-centroid``: the predicted concept's centroid (unit mean of its captions' pooled embeddings) as
      the pooled input, cross-attention as ``concept-both`` (what :class:`EmbeddedPrior` does with a flow file
      that carries its anchor). The concept-* probes are for files without one, or with ``--anchor off``.
    """

    def __init__(self, mode: str, prior, train_captions: Sequence[str], concept_of: dict[str, str] | None = None):
        if mode not in TEXT_CONDITIONS:
            raise SDSAudioError(f"--text-condition must be one of {', '.join(TEXT_CONDITIONS)}, got {mode!r}")
        self.mode, self.prior = mode, prior
        self.captions = sorted(set(train_captions))
        encoder = prior.text_encoder
        self.vocabulary = self.bank = None
        if mode == "known-tokens":
            ids = encoder.tokenizer(self.captions, add_special_tokens=True)["input_ids"]
            self.vocabulary = torch.tensor(sorted({i for row in ids for i in row}))
        elif mode == "nearest-caption" or mode in ANCHORED_CONDITIONS:
            self.bank = torch.cat([encoder.encode(self.captions[i:i + 256])[2]
                                   for i in range(0, len(self.captions), 256)]).float().cpu()
        if mode in ANCHORED_CONDITIONS:
            if concept_of is None:
                raise SDSAudioError(f"--text-condition {mode} needs each training caption's concept")
            from sds_audio.flow.anchor import fit_anchor

            self.anchor = fit_anchor(self.bank, [concept_of[c] for c in self.captions], self.captions)

    def condition(self, prompt: str, seconds: float, n_frames: int):
        """``(cond, uncond)`` :class:`~sds_audio.flow.FlowCondition` for ``prompt``."""
        from sds_audio.flow import FlowCondition

        pooled_from = centroid = None
        if self.mode == "nearest-caption" or self.mode in ANCHORED_CONDITIONS:
            pooled = self.prior.text_encoder.encode([prompt])[2].float().cpu()
            if self.mode == "nearest-caption":
                nearest = self.captions[int((self.bank @ pooled[0]).argmax())]
            else:                                            # the library's PromptAnchor, fitted here
                nearest = self.captions[int(self.anchor.nearest(pooled)[0])]
            if self.mode == "concept-centroid":
                centroid = self.anchor.concept_embedding(pooled)
            if self.mode in ("concept-pooled", "concept-both", "concept-centroid"):
                pooled_from = nearest
            else:
                prompt = nearest
        c, u = self.prior.flow_conditions(self.prior.condition(prompt, seconds=seconds), n_frames)
        if pooled_from is not None:
            ref, _ = self.prior.flow_conditions(self.prior.condition(pooled_from, seconds=seconds), n_frames)
            if self.mode in ("concept-both", "concept-centroid"):
                pooled = ref.pooled if centroid is None else centroid.to(ref.pooled)
                c = FlowCondition(torch.cat([ref.tokens, c.tokens], 1), torch.cat([ref.mask, c.mask], 1), pooled,
                                  c.seconds, c.drop)
            else:
                c = FlowCondition(c.tokens, c.mask, ref.pooled, c.seconds, c.drop)
        if self.mode == "pooled":
            c = FlowCondition(torch.zeros_like(c.tokens[:, :1]), torch.ones_like(c.mask[:, :1]), c.pooled,
                              c.seconds, c.drop)
        elif self.mode == "known-tokens":
            ids = self.prior.text_encoder.tokenizer([prompt], truncation=True, max_length=c.tokens.shape[1],
                                                    return_tensors="pt")["input_ids"].to(c.mask.device)
            known = c.mask.clone()
            known[:, :ids.shape[1]] &= torch.isin(ids, self.vocabulary.to(ids.device))
            known[:, 0] = True                                           # [CLS]: at least one token
            c = FlowCondition(c.tokens * known[..., None].to(c.tokens.dtype), known, c.pooled, c.seconds, c.drop)
        return c, u


@torch.no_grad()
def generate_batch(prior, prompts: Sequence[str], seconds: float, seeds: Sequence[int], *, steps: int,
                   cfg: float, sway_coef: float | None, method: str = "euler",
                   text: TextVariant | None = None) -> torch.Tensor:
    """Batched :func:`sds_audio.flow.generate`: row ``i`` is ``generate(prompts[i], seconds=seconds, seed=seeds[i])``
    (with ``text``: the prompts conditioned as that :class:`TextVariant` says).

    Returns:
        ``(B, 1, round(seconds * sample_rate))`` float32 audio at the prior's rate.
    """
    from sds_audio.flow import FlowCondition
    from sds_audio.flow.guidance import guided_velocity
    from sds_audio.flow.samplers import integrate, time_grid

    if len(prompts) != len(seeds) or not prompts:
        raise SDSAudioError(f"need one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
    n_samples = int(round(seconds * prior.sample_rate))
    n_frames = prior.latent_length(n_samples)
    noise = torch.cat([torch.randn(1, prior.latent_channels, n_frames, generator=torch.Generator().manual_seed(int(s)))
                       for s in seeds]).to(prior.device, prior.dtype)
    conds, unconds = [], []
    for p in prompts:
        if text is None:
            c, u = prior.flow_conditions(prior.condition(p, seconds=seconds), n_frames)
        else:
            c, u = text.condition(p, seconds, n_frames)
        conds.append(c)
        unconds.append(u)
    velocity = guided_velocity(prior.flow, FlowCondition.cat(conds), FlowCondition.cat(unconds), float(cfg))
    latents = integrate(velocity, noise, time_grid(int(steps), 0.0, 1.0, sway_coef), method)
    return prior.decode(latents)[..., :n_samples].float().cpu()


def flow_section(bench: Bench, prior, *, gens_per_concept: int = 8, seconds: str | float = "typical",
                 steps: int | None = None, cfg: float | None = None, sway_coef: float | None = None,
                 method: str | None = None, gen_batch: int = 16, save_audio: str | Path | None = None,
                 text_condition: str = "prompt") -> dict[str, Any]:
    """Generate for every concept under test, classify with the judge, and compute KAD against real clips.

    Args:
        gens_per_concept: generations per concept from the canonical prompt (and as many from paraphrases).
        seconds: ``"typical"`` (each concept's median training-clip length) or a fixed duration.
        steps, cfg, sway_coef, method: sampler settings (None: :func:`sds_audio.flow.generate`'s defaults).
        gen_batch: generations per batched sampler call.
        save_audio: directory to write the first canonical generation of each concept to (None: none).
        text_condition: what the model is conditioned on (:class:`TextVariant`; ``"prompt"``: the prompt).
    """
    from tqdm.auto import tqdm

    from sds_audio.metrics import kad

    if gens_per_concept < 1:
        raise SDSAudioError(f"--gens-per-concept must be >= 1, got {gens_per_concept}")
    d = generation_defaults()
    steps = d["steps"] if steps is None else int(steps)
    cfg = d["cfg"] if cfg is None else float(cfg)
    sway_coef = d["sway_coef"] if sway_coef is None else (float(sway_coef) or None)
    method = d["method"] if method is None else method
    corpus, n = bench.corpus, gens_per_concept
    train_records = [r for r in corpus.records if r.get("split") == "train"]
    text = None if text_condition == "prompt" else TextVariant(
        text_condition, prior, [r["caption"] for r in train_records], {r["caption"]: r["concept"] for r in train_records})
    if seconds == "typical":
        durations = {c: typical_seconds(corpus, c, prior.max_duration_s) for c in bench.concept_ids}
        duration_rule = (f"each concept's median training-clip length, clamped to "
                         f"[{min(MIN_GEN_SECONDS, prior.max_duration_s):g}, {prior.max_duration_s:g}] s")
    else:
        fixed = float(seconds)
        if not 0 < fixed <= 2 * prior.max_duration_s:
            raise SDSAudioError(f"--seconds must lie in (0, {2 * prior.max_duration_s:g}], got {fixed}")
        durations = {c: fixed for c in bench.concept_ids}
        duration_rule = f"fixed {fixed:g} s"
    if save_audio is not None:
        from sds_audio.audio_io import save_audio as write_wav

        Path(save_audio).mkdir(parents=True, exist_ok=True)
    emb = {0: [], 1: []}
    truth = {0: [], 1: []}
    started = time.perf_counter()
    audio_seconds = 0.0
    for c in tqdm(bench.concept_ids, desc="flow: generate", disable=not bench.progress):
        paras = corpus.paraphrases[c]
        rows = [(0, i, corpus.prompts[c]) for i in range(n)]
        if paras:
            rows += [(1, i, paras[i % len(paras)]) for i in range(n)]
        for s in range(0, len(rows), gen_batch):
            part = rows[s:s + gen_batch]
            audio = generate_batch(prior, [p for _, _, p in part], durations[c],
                                   [generation_seed(bench.seed, c, k, i) for k, i, _ in part],
                                   steps=steps, cfg=cfg, sway_coef=sway_coef, method=method, text=text)
            audio_seconds += audio.shape[0] * audio.shape[-1] / prior.sample_rate
            e = embed_clips(bench.judge, list(audio.unsqueeze(1)), prior.sample_rate)
            for (k, i, _), row_emb, row_audio in zip(part, e, audio):
                emb[k].append(row_emb)
                truth[k].append(c)
                if save_audio is not None and k == 0 and i == 0:
                    name = corpus.concepts[c].replace(" ", "_").replace("/", "_")
                    write_wav(Path(save_audio) / f"{c:03d}_{name}.wav", row_audio.unsqueeze(0), prior.sample_rate)
    gen_seconds = time.perf_counter() - started
    prompts = bench.prompt_embeddings()
    emb_t = {k: torch.stack(v) if v else torch.zeros(0, prompts.shape[1]) for k, v in emb.items()}
    ok = {k: top1(emb_t[k], truth[k], prompts) for k in (0, 1)}
    _, real_truth, real_emb = bench.real("heldout")
    _, _, train_emb = bench.real("train", per_concept=n)
    ok_real = top1(real_emb, real_truth, prompts)

    def safe_kad(x: torch.Tensor, y: torch.Tensor) -> float | None:
        return kad(x, y) if x.shape[0] >= 2 and y.shape[0] >= 2 else None

    acc_c, acc_p = _rate(ok[0]), _rate(ok[1])
    per = per_concept_rates(ok[0], truth[0], corpus.concepts)
    return {"n_concepts": len(bench.concept_ids), "gens_per_concept": n,
            "n_generations_canonical": len(truth[0]), "n_generations_paraphrase": len(truth[1]),
            "top1_canonical": acc_c, "top1_paraphrase": acc_p, "top1_real_heldout": _rate(ok_real),
            "bar_canonical": FLOW_CANONICAL_BAR, "bar_paraphrase": FLOW_PARAPHRASE_BAR,
            "pass_canonical": acc_c is not None and acc_c >= FLOW_CANONICAL_BAR,
            "pass_paraphrase": acc_p is not None and acc_p >= FLOW_PARAPHRASE_BAR,
            "pass": (acc_c is not None and acc_c >= FLOW_CANONICAL_BAR
                     and acc_p is not None and acc_p >= FLOW_PARAPHRASE_BAR),
            "kad_generated_vs_heldout": safe_kad(real_emb, emb_t[0]),
            "kad_paraphrase_generated_vs_heldout": safe_kad(real_emb, emb_t[1]),
            "kad_train_vs_heldout": safe_kad(real_emb, train_emb),
            "n_heldout_clips": len(real_truth), "n_train_clips": int(train_emb.shape[0]),
            "durations": duration_rule,
            "seconds_min": min(durations.values()), "seconds_max": max(durations.values()),
            "steps": steps, "cfg": cfg, "sway_coef": sway_coef, "method": method, "text_condition": text_condition,
            "generated_audio_seconds": audio_seconds, "generation_wall_seconds": gen_seconds,
            "weakest": sorted(per.items(), key=lambda kv: (kv[1], kv[0]))[:5]}


# --------------------------------------------------------------------------- 4. speed
@torch.inference_mode()
def speed_section(prior, *, repeats: int = 20, warmup: int = 3, seconds: float = 1.5, t: float = 0.6,
                  steps: int = 4, cfg: float = 4.0, seed: int = 0, prompt: str = SPEED_PROMPT) -> dict[str, Any]:
    """Time encode -> add noise -> ``steps``-step guided denoise -> decode of a ``seconds`` clip.

    Returns medians (ms) of the total wall time, each stage's wall time and the
    total process CPU time over ``repeats`` runs after ``warmup`` runs.
    """
    if repeats < 10:
        raise SDSAudioError(f"--repeats must be >= 10 (the bar is a median over at least 10 runs), got {repeats}")
    g = torch.Generator().manual_seed(seed)
    n_samples = int(round(seconds * prior.sample_rate))
    audio = 0.1 * torch.randn(1, prior.channels, n_samples, generator=g)
    noise = torch.randn(1, prior.latent_channels, prior.latent_length(n_samples), generator=g)
    cond = prior.condition(prompt)  # cached, as SDS does once per run
    t_tensor = torch.tensor([t])

    def run() -> tuple[float, float, float, float]:
        cpu0, t0 = time.process_time(), time.perf_counter()
        z = prior.encode(audio)
        t1 = time.perf_counter()
        x0 = prior.denoise(prior.add_noise(z, noise.to(z), t_tensor), t_tensor, cond, cfg, steps=steps)
        t2 = time.perf_counter()
        prior.decode(x0)
        t3 = time.perf_counter()
        return (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3, (time.process_time() - cpu0) * 1e3

    for _ in range(warmup):
        run()
    runs = [run() for _ in range(repeats)]
    enc, den, dec, cpu = (list(x) for x in zip(*runs))
    totals = [a + b + c for a, b, c in zip(enc, den, dec)]
    total = statistics.median(totals)
    return {"threads": torch.get_num_threads(), "seconds": seconds, "t": t, "steps": steps, "cfg": cfg,
            "repeats": repeats, "total_ms_median": total, "total_ms_min": min(totals),
            "encode_ms_median": statistics.median(enc), "denoise_ms_median": statistics.median(den),
            "decode_ms_median": statistics.median(dec), "cpu_ms_median": statistics.median(cpu),
            "bar_ms": SPEED_BAR_MS, "pass": total <= SPEED_BAR_MS}


# --------------------------------------------------------------------------- printing
def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table with padded columns."""
    cells = [[str(h) for h in headers]] + [[str(v) for v in r] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    line = lambda row: "| " + " | ".join(v.ljust(w) for v, w in zip(row, widths)) + " |"  # noqa: E731
    return "\n".join([line(cells[0]), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
                     + [line(r) for r in cells[1:]])


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def num(x: float | None, fmt: str = ".3f") -> str:
    return "n/a" if x is None else format(x, fmt)


def verdict(ok: bool) -> str:
    return "**PASS**" if ok else "**FAIL**"


def format_judge(r: dict[str, Any]) -> str:
    rows = [["held-out top-1, canonical prompts", pct(r["top1"]), f">= {pct(r['bar_top1'])}", verdict(r["pass"])],
            ["held-out top-1, paraphrases (mean over rounds)", pct(r["paraphrase_top1"]), "(reported)", ""]]
    weak = ", ".join(f"{c} {pct(v)}" for c, v in r["weakest"])
    return (f"### 1. Judge: zero-shot concept accuracy ({r['n_clips']} held-out clips, {r['n_concepts']} concepts)\n\n"
            + md_table(["metric", "value", "bar", "result"], rows) + f"\n\nweakest concepts: {weak}\n\n"
            + f"Judge: {verdict(r['pass'])}\n")


def format_codec(r: dict[str, Any]) -> str:
    rows = [["judge top-1 on originals", pct(r["top1_original"]), "", ""],
            ["judge top-1 on reconstructions", pct(r["top1_reconstruction"]), "", ""],
            ["reconstruction / original", pct(r["ratio"]), f">= {pct(r['bar_ratio'])}", verdict(r["pass"])],
            ["same judge prediction on both", pct(r["prediction_agreement"]), "", ""],
            ["multi-resolution STFT distance (median)", num(r["stft_distance_median"]), "", ""],
            ["SI-SDR (median)", f"{num(r['si_sdr_db_median'], '.2f')} dB", "", ""],
            ["compression factor", f"{r['compression_factor']:.1f}x", "", ""]]
    return (f"### 2. Codec ({r['n_clips']} held-out clips, {r['audio_seconds']:.0f} s of audio)\n\n"
            + md_table(["metric", "value", "bar", "result"], rows)
            + f"\n\n{r['sample_rate']} samples/s x {r['channels']} channel(s) -> {r['latent_rate_hz']:.2f} frames/s x "
            f"{r['latent_channels']} latent channels = {r['latent_values_per_s']:.0f} latent values/s "
            f"(hop {r['hop_length']}); reconstruction took {r['reconstruct_seconds']:.1f} s\n\n"
            + (md_table(["concept (largest drops)", "top-1 original", "top-1 reconstruction"],
                        [[c, pct(a), pct(b)] for c, a, b in r["largest_drops"]]) + "\n\n"
               if r.get("largest_drops") else "")
            + f"Codec: {verdict(r['pass'])}\n")


def format_flow(r: dict[str, Any]) -> str:
    n = r["gens_per_concept"]
    rows = [["generations, canonical prompt", r["n_generations_canonical"], pct(r["top1_canonical"]),
             f">= {pct(r['bar_canonical'])}", verdict(r["pass_canonical"]),
             num(r["kad_generated_vs_heldout"])],
            ["generations, held-out paraphrases", r["n_generations_paraphrase"], pct(r["top1_paraphrase"]),
             f">= {pct(r['bar_paraphrase'])}", verdict(r["pass_paraphrase"]),
             num(r["kad_paraphrase_generated_vs_heldout"])],
            [f"real training clips ({n} per concept)", r["n_train_clips"], "", "", "",
             num(r["kad_train_vs_heldout"])],
            ["real held-out clips (reference)", r["n_heldout_clips"], pct(r["top1_real_heldout"]), "", "", ""]]
    weak = ", ".join(f"{c} {pct(v)}" for c, v in r["weakest"])
    sway = "uniform" if r["sway_coef"] is None else f"sway {r['sway_coef']:g}"
    return (f"### 3. Flow prior ({r['n_concepts']} concepts x {n} generations per prompt kind)\n\n"
            + md_table(["set", "clips", "judge top-1", "bar", "result", "KAD vs held-out (x1000)"], rows)
            + f"\n\nsampler: {r['method']}, {r['steps']} steps ({sway}), CFG {r['cfg']:g}"
            + ("" if r.get("text_condition", "prompt") == "prompt" else f", text condition: {r['text_condition']}")
            + "; durations: "
            f"{r['durations']} ({r['seconds_min']:.2f}-{r['seconds_max']:.2f} s); generated "
            f"{r['generated_audio_seconds']:.0f} s of audio in {r['generation_wall_seconds']:.0f} s\n"
            f"weakest concepts (canonical): {weak}\n\n"
            + f"Flow prior: {verdict(r['pass'])}\n")


def format_speed(r: dict[str, Any]) -> str:
    rows = [["encode", num(r["encode_ms_median"], ".1f")],
            [f"add noise + {r['steps']}-step denoise, CFG {r['cfg']:g}", num(r["denoise_ms_median"], ".1f")],
            ["decode", num(r["decode_ms_median"], ".1f")],
            ["**total** (median of per-run totals)", num(r["total_ms_median"], ".1f")],
            ["total, fastest run", num(r["total_ms_min"], ".1f")],
            ["total process CPU time (median)", num(r["cpu_ms_median"], ".1f")]]
    return (f"### 4. Speed: one SDS prior call on a {r['seconds']:g} s clip ({r['threads']} threads, median of "
            f"{r['repeats']} runs after warm-up)\n\n" + md_table(["stage", "ms"], rows)
            + f"\n\nbar: total <= {r['bar_ms']:.0f} ms -> Speed: {verdict(r['pass'])}\n")


def format_summary(results: dict[str, Any]) -> str:
    rows = []
    if "judge" in results:
        r = results["judge"]
        rows.append(["1. judge held-out top-1", pct(r["top1"]), f">= {pct(r['bar_top1'])}", verdict(r["pass"])])
    if "codec" in results:
        r = results["codec"]
        rows.append(["2. codec recon / original top-1", pct(r["ratio"]), f">= {pct(r['bar_ratio'])}",
                     verdict(r["pass"])])
    if "flow" in results:
        r = results["flow"]
        rows.append(["3. flow top-1, canonical prompts", pct(r["top1_canonical"]), f">= {pct(r['bar_canonical'])}",
                     verdict(r["pass_canonical"])])
        rows.append(["3. flow top-1, paraphrases", pct(r["top1_paraphrase"]), f">= {pct(r['bar_paraphrase'])}",
                     verdict(r["pass_paraphrase"])])
    if "speed" in results:
        r = results["speed"]
        rows.append(["4. SDS prior call, 1.5 s clip", f"{r['total_ms_median']:.1f} ms", f"<= {r['bar_ms']:.0f} ms",
                     verdict(r["pass"])])
    times = ", ".join(f"{name} {results[name]['section_wall_seconds']:.0f} s" for name in SECTIONS
                      if name in results and "section_wall_seconds" in results[name])
    return ("### Summary\n\n" + md_table(["check", "value", "bar", "result"], rows)
            + (f"\n\nsection wall times: {times}" if times else "") + "\n")


def _json_safe(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


# --------------------------------------------------------------------------- main
def parse_sections(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [s for s in names if s not in SECTIONS]
    if bad or not names:
        raise SDSAudioError(f"--sections takes a comma-separated subset of {','.join(SECTIONS)}, got {text!r}")
    return [s for s in SECTIONS if s in names]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help=f"corpus directory (default {DEFAULT_CORPUS})")
    p.add_argument("--assets", default=None, help="directory with codec/flow/judge .safetensors "
                                                  "(default: sds_audio/assets)")
    p.add_argument("--codec", default=None, help="codec weights (or a codec training checkpoint)")
    p.add_argument("--flow", default=None, help="flow weights")
    p.add_argument("--judge", default=None, help="judge weights")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of judge,codec,flow,speed")
    p.add_argument("--gens-per-concept", type=int, default=8, help="generations per concept and prompt kind")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit-concepts", type=int, default=None, help="K concepts spread over the list (quick runs)")
    p.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for every section (default 2)")
    p.add_argument("--seconds", default="typical",
                   help="generation length: 'typical' (per concept, default) or seconds for every concept")
    p.add_argument("--steps", type=int, default=None, help="generation sampler steps (default: sds-audio generate's)")
    p.add_argument("--cfg", type=float, default=None, help="generation guidance scale (default: generate's)")
    p.add_argument("--sway", type=float, default=None, help="generation sway coefficient, 0 = uniform "
                                                            "(default: generate's)")
    p.add_argument("--gen-batch", type=int, default=16, help="generations per batched sampler call")
    p.add_argument("--text-condition", default="prompt", choices=TEXT_CONDITIONS,
                   help="flow section probe: condition on the prompt (default), its pooled embedding alone, "
                        "only its word pieces that training captions use, or the nearest training caption")
    p.add_argument("--repeats", type=int, default=20, help="timed runs of the speed section (>= 10)")
    p.add_argument("--save-audio", default=None, help="write each concept's first generation to this directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--anchor", default="centroid", choices=ANCHOR_MODES,
                   help="EmbeddedPrior's anchor mode: the flow model's prompt anchor (see flow/anchor.py) sets the "
                        "pooled input to the concept's centroid (default) or its nearest training caption; off: the "
                        "prompt alone")
    p.add_argument("--paraphrase-set", default="corpus", choices=tuple(PARAPHRASE_SETS),
                   help="corpus: the held-out paraphrases in concepts.json; second: four more per concept in the same "
                        "held-out wording (a confirmation set no design choice was made on); validation: eight more "
                        "per concept, for making design choices on")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the chosen sections, print their tables, return the results (also written to ``--json``)."""
    sections = parse_sections(args.sections)
    progress = not args.no_progress
    torch.set_num_threads(int(args.threads))
    paths = resolve_weight_paths(args.assets, args.codec, args.flow, args.judge)
    missing = missing_weights(paths, sections)
    if missing:
        raise SDSAudioError("\n".join(missing), exit_code=1)
    seconds: str | float = args.seconds if args.seconds == "typical" else float(args.seconds)

    from sds_audio.text import TextEncoder

    text_encoder = TextEncoder()
    need = {w for s in sections for w in NEEDS[s]}
    codec, codec_source = load_codec_weights(paths["codec"]) if "codec" in need else (None, None)
    prior = build_prior(codec, paths["flow"], text_encoder, anchor=args.anchor) if "flow" in need else None
    bench = None
    if "judge" in need:
        from sds_audio.judge import load_judge

        corpus = read_corpus(args.corpus)
        if args.paraphrase_set != "corpus":
            corpus.paraphrases = paraphrase_set(corpus.concepts, args.paraphrase_set)
        judge = load_judge(paths["judge"], text_encoder=text_encoder)
        bench = Bench(corpus, judge, select_concepts(len(corpus.concepts), args.limit_concepts), args.seed, progress)

    settings = [["sections", ", ".join(sections)], ["threads", torch.get_num_threads()], ["seed", args.seed]]
    if bench is not None:
        n_all = len(bench.corpus.concepts)
        settings += [["corpus", bench.corpus.root],
                     ["concepts under test", f"{len(bench.concept_ids)} of {n_all}"
                      + ("" if len(bench.concept_ids) == n_all else " (--limit-concepts; judge section: all)")]]
    for w in ("codec", "flow", "judge"):
        if w in need:
            settings.append([f"{w} weights", f"{paths[w]}" + (f" ({codec_source})" if w == "codec" else "")])
    print("## Embedded stack benchmark\n")
    print(md_table(["setting", "value"], settings) + "\n", flush=True)

    results: dict[str, Any] = {"settings": {k: str(v) for k, v in settings}}
    runners = {
        "judge": (lambda: judge_section(bench), format_judge),
        "codec": (lambda: codec_section(bench, codec), format_codec),
        "flow": (lambda: flow_section(bench, prior, gens_per_concept=args.gens_per_concept, seconds=seconds,
                                      steps=args.steps, cfg=args.cfg, sway_coef=args.sway, gen_batch=args.gen_batch,
                                      save_audio=args.save_audio, text_condition=args.text_condition),
                 format_flow),
        "speed": (lambda: speed_section(prior, repeats=args.repeats, seed=args.seed), format_speed),
    }
    for name in sections:
        compute, fmt = runners[name]
        started = time.perf_counter()
        results[name] = compute()
        # wall time of the section, including the real-clip embeddings it was first to need
        results[name]["section_wall_seconds"] = time.perf_counter() - started
        print(fmt(results[name]), flush=True)
    print(format_summary(results), flush=True)
    if args.json:
        from sds_audio.atomic import write_json_atomic

        write_json_atomic(args.json, _json_safe(results))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except SDSAudioError as exc:
        for line in str(exc).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
