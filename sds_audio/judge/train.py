"""Training and evaluating the judge on a captioned corpus.

Training (:func:`train_judge`)
------------------------------
Symmetric InfoNCE with *concept-aware* targets. Many clips share a concept
(and captions of one concept say nearly the same thing), so treating every
other caption in the batch as a negative would push apart things that should
be close. We do two things:

1. Batches are concept-balanced: each batch draws ``batch_size`` concepts
   uniformly (distinct when there are at least ``batch_size`` concepts; an
   even spread otherwise), then a random training clip of each. Rare concepts
   get as many updates as common ones.
2. Targets are multi-positive: audio ``i``'s target distribution is uniform
   over the captions ``j`` of the same concept (itself included), and the
   same for captions over audios. The loss is the cross-entropy of the
   softmax over the batch against these targets, averaged over both
   directions. With all-distinct concepts this is exactly CLIP's loss.

Augmentation works on precomputed log-mel magnitudes (the corpus is turned
into mels once and cached as ``mel_cache.safetensors`` in ``out_dir``), which
makes a CPU step cost just the network. Because mixing happens in the power
domain, the augmentations are the waveform ones, exactly for gain and in
expectation for noise:

- random gain (uniform in dB, default -24..+6 dB) so the judge rates timbre,
  not loudness,
- mild white noise (probability 0.5, 20..50 dB below the crop's mean power)
  added as the mel power of a real white-noise recording (random excerpt of
  a seeded noise bank),
- time shift: half the crops start at the clip's onset shifted by up to
  +-0.1 s (leading silence or a clipped attack), the other half anywhere in
  the clip.

A training step (batch 64, one thread) costs about 0.23 CPU-seconds under
bf16 autocast on a CPU with AMX, 0.40 s in fp32, so the default 12000 steps
take about 45-80 minutes of one core. The held-out zero-shot accuracy is
written to ``metrics.json``.

Captions are replaced by the concept's canonical prompt with probability
``prompt_prob`` (0.2), so the canonical prompt (what benchmarks ask) is seen;
paraphrases never are, and :func:`evaluate_judge` reports them separately as
the zero-shot text-generalisation number.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..atomic import atomic_path, write_json_atomic
from ..errors import SDSAudioError
from ..interrupts import StepInterrupts
from .model import (_LOG_EPS, FORMAT_NAME, JudgeConfig, JudgeModel, _judge_or_default,
                    save_judge)

__all__ = ["evaluate_judge", "train_judge"]

# --------------------------------------------------------------------------- corpus features (training)
@dataclass
class _CorpusFeatures:
    """Log-mel magnitudes of every clip of a corpus, concatenated along time."""

    mels: torch.Tensor            # (n_mels, total_frames) float16
    offsets: torch.Tensor         # (N,) int64 first frame of each clip
    lengths: torch.Tensor         # (N,) int64 frames of each clip
    concept_index: torch.Tensor   # (N,) int64 position in `concepts`
    is_train: torch.Tensor        # (N,) bool
    caption_index: torch.Tensor   # (N,) int64 position in `texts`
    concepts: list[str]
    prompt_index: list[int]       # concept -> position of its canonical prompt in `texts`
    paraphrase_index: list[list[int]]
    texts: list[str]
    text_pooled: torch.Tensor     # (n_texts, text_dim) float32

    def clip(self, i: int) -> torch.Tensor:
        o, n = int(self.offsets[i]), int(self.lengths[i])
        return self.mels[:, o:o + n]


def _corpus_fingerprint(root: Path, config: JudgeConfig) -> str:
    h = hashlib.sha256()
    for name in ("manifest.jsonl", "concepts.json"):
        p = root / name
        h.update(p.read_bytes() if p.is_file() else b"")
    front = {k: v for k, v in config.to_dict().items()
             if k in ("sample_rate", "n_fft", "hop_length", "n_mels", "f_min_hz", "text_dim")}
    h.update(json.dumps(front, sort_keys=True).encode())
    return h.hexdigest()


def _corpus_features(root: Path, judge: JudgeModel, cache_path: Path | None, progress: bool,
                     split: str = "all") -> _CorpusFeatures:
    """Compute (or read from ``cache_path``, when given) the log-mels and text embeddings of a corpus split."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from ..corpus.dataset import CorpusDataset, read_concepts

    fingerprint = _corpus_fingerprint(root, judge.config) + f":{split}"
    if cache_path is not None and cache_path.is_file():
        try:
            with safe_open(str(cache_path), framework="pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("fingerprint") == fingerprint:
                    t = {k: fh.get_tensor(k) for k in fh.keys()}
                    info = json.loads(meta["info"])
                    return _CorpusFeatures(
                        mels=t["mels"], offsets=t["offsets"], lengths=t["lengths"],
                        concept_index=t["concept_index"], is_train=t["is_train"].bool(),
                        caption_index=t["caption_index"], text_pooled=t["text_pooled"].float(), **info)
        except (SafetensorError, OSError, KeyError, json.JSONDecodeError):
            pass  # stale or broken cache: recompute

    data = CorpusDataset(root, split=split, segment_s=None, sample_rate=judge.config.sample_rate)
    concepts_json = {c["concept"]: c for c in read_concepts(root)} if (root / "concepts.json").is_file() else {}
    concepts = list(data.concepts)
    texts: list[str] = []
    text_pos: dict[str, int] = {}

    def text_id(s: str) -> int:
        if s not in text_pos:
            text_pos[s] = len(texts)
            texts.append(s)
        return text_pos[s]

    prompt_index = [text_id(concepts_json.get(c, {}).get("prompt") or c) for c in concepts]
    paraphrase_index = [[text_id(p) for p in concepts_json.get(c, {}).get("paraphrases", []) if p.strip()]
                        for c in concepts]
    mels, offsets, lengths, cidx, train, capidx = [], [], [], [], [], []
    total = 0
    with torch.no_grad():
        for i in tqdm(range(len(data)), desc="judge: mel features", disable=not progress, leave=False):
            rec = data.records[i]
            audio = torch.from_numpy(data.load(i)).view(1, 1, -1)
            if audio.shape[-1] == 0:
                raise SDSAudioError(f"corpus clip {root / rec['path']} holds no samples")
            m = judge.features(audio)[0].to(torch.float16)
            mels.append(m)
            offsets.append(total)
            lengths.append(m.shape[-1])
            total += m.shape[-1]
            cidx.append(data.concept_to_index[rec["concept"]])
            train.append(rec["split"] == "train")
            capidx.append(text_id(rec["caption"]))
    pooled = []
    for s in range(0, len(texts), 256):
        pooled.append(judge.text_encoder.encode(texts[s:s + 256])[2].float().cpu())
    feats = _CorpusFeatures(
        mels=torch.cat(mels, dim=-1).contiguous(), offsets=torch.tensor(offsets), lengths=torch.tensor(lengths),
        concept_index=torch.tensor(cidx), is_train=torch.tensor(train), caption_index=torch.tensor(capidx),
        concepts=concepts, prompt_index=prompt_index, paraphrase_index=paraphrase_index, texts=texts,
        text_pooled=torch.cat(pooled))
    info = {"concepts": concepts, "prompt_index": prompt_index, "paraphrase_index": paraphrase_index,
            "texts": texts}
    if cache_path is None:
        return feats
    tensors = {"mels": feats.mels, "offsets": feats.offsets, "lengths": feats.lengths,
               "concept_index": feats.concept_index, "is_train": feats.is_train.to(torch.uint8),
               "caption_index": feats.caption_index, "text_pooled": feats.text_pooled.contiguous()}
    with atomic_path(cache_path) as tmp:
        save_file(tensors, str(tmp), metadata={"fingerprint": fingerprint, "info": json.dumps(info)})
    return feats


def _white_noise_mel_power(judge: JudgeModel, seconds: float = 20.0, seed: int = 1234) -> torch.Tensor:
    """Mel power ``(n_mels, frames)`` of unit-variance white noise (the noise bank for augmentation)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 1, int(seconds * judge.config.sample_rate), generator=g)
    with torch.no_grad():
        return judge.mel(noise)[0, 0].pow(2) - _LOG_EPS


# --------------------------------------------------------------------------- batches
def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


@dataclass
class _Augment:
    gain_db: tuple[float, float] = (-24.0, 6.0)
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (20.0, 50.0)
    onset_prob: float = 0.5
    shift_s: float = 0.1


def _crop(mel: torch.Tensor, start: int, n_frames: int, floor: float) -> torch.Tensor:
    """Frames ``start .. start + n_frames`` of ``mel (M, F)``; outside the clip is ``floor`` (silence)."""
    out = torch.full((mel.shape[0], n_frames), floor, dtype=torch.float32)
    lo, hi = max(start, 0), min(start + n_frames, mel.shape[1])
    if hi > lo:
        out[:, lo - start:hi - start] = mel[:, lo:hi].float()
    return out


def _make_batch(feats: _CorpusFeatures, clips: torch.Tensor, n_frames: int, g: torch.Generator,
                aug: _Augment | None, noise_bank: torch.Tensor | None, hop_s: float) -> torch.Tensor:
    """Augmented log-mel crops ``(B, n_mels, n_frames)`` of corpus clips ``clips (B,)``."""
    floor = 0.5 * math.log(_LOG_EPS)
    b = clips.shape[0]
    out = []
    for k in range(b):
        mel = feats.clip(int(clips[k]))
        n = mel.shape[1]
        if aug is None:
            start = 0
        elif float(torch.rand(1, generator=g)) < aug.onset_prob or n <= n_frames:
            max_shift = int(round(aug.shift_s / hop_s))
            start = int(torch.randint(-max_shift, max_shift + 1, (1,), generator=g))
        else:
            start = int(torch.randint(0, n - n_frames + 1, (1,), generator=g))
        out.append(_crop(mel, start, n_frames, floor))
    logmel = torch.stack(out)
    if aug is None:
        return logmel
    # back to power, apply gain and noise there, then log-magnitude again
    power = (2.0 * logmel).exp() - _LOG_EPS
    gain = 10.0 ** (_uniform(g, b, *aug.gain_db) / 10.0)  # power gain
    power = power.clamp_min(0.0) * gain.view(b, 1, 1)
    if noise_bank is not None and aug.noise_prob > 0:
        use = (torch.rand(b, generator=g) < aug.noise_prob).float()
        snr = 10.0 ** (_uniform(g, b, *aug.snr_db) / 10.0)
        starts = torch.randint(0, noise_bank.shape[1] - n_frames + 1, (b,), generator=g)
        noise = torch.stack([noise_bank[:, int(s):int(s) + n_frames] for s in starts])
        # scale the noise to the drawn signal-to-noise ratio (mel-power means of the crop)
        level = power.mean(dim=(1, 2)) / noise.mean(dim=(1, 2)).clamp_min(1e-12) / snr * use
        power = power + level.view(b, 1, 1) * noise
    return 0.5 * torch.log(power + _LOG_EPS)


def _sample_clips(by_concept: list[torch.Tensor], batch_size: int, g: torch.Generator) -> torch.Tensor:
    """Concept-balanced draw: distinct concepts when possible, then one random clip of each."""
    k = len(by_concept)
    reps = -(-batch_size // k)
    order = torch.cat([torch.randperm(k, generator=g) for _ in range(reps)])[:batch_size]
    picks = []
    for c in order.tolist():
        pool = by_concept[c]
        picks.append(pool[int(torch.randint(0, pool.shape[0], (1,), generator=g))])
    return torch.stack(picks)


def _contrastive_loss(audio_emb: torch.Tensor, text_emb: torch.Tensor, concept: torch.Tensor,
                      scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with multi-positive targets (same concept = positive)."""
    logits = scale * audio_emb @ text_emb.T
    same = (concept.view(-1, 1) == concept.view(1, -1)).float()
    target = same / same.sum(dim=1, keepdim=True)
    loss_a = -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    loss_t = -(target * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_a + loss_t)


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _evaluate_features(judge: JudgeModel, feats: _CorpusFeatures, clips: Sequence[int],
                       batch_size: int = 64) -> dict[str, Any]:
    """Zero-shot top-1 of ``clips`` (whole clips, padded to ``segment_s``) with canonical prompts / paraphrases."""
    if len(clips) == 0:
        return {"n_clips": 0, "top1": None, "paraphrase_top1": None, "per_concept_top1": {}}
    was_training = judge.training
    judge.eval()
    try:
        n_min = judge.config.segment_frames
        floor = 0.5 * math.log(_LOG_EPS)
        embs = []
        # batch clips of equal padded length together (pooling is over the whole clip)
        clips = list(clips)
        lengths = {i: max(int(feats.lengths[i]), n_min) for i in clips}
        by_len: dict[int, list[int]] = {}
        for i in clips:
            by_len.setdefault(lengths[i], []).append(i)
        emb_of: dict[int, torch.Tensor] = {}
        for n, group in by_len.items():
            for s in range(0, len(group), batch_size):
                part = group[s:s + batch_size]
                x = torch.stack([_crop(feats.clip(i), 0, n, floor) for i in part]).to(judge.logit_scale.device)
                for i, e in zip(part, judge.encode_features(x).cpu()):
                    emb_of[i] = e
        embs = torch.stack([emb_of[i] for i in clips])
        truth = feats.concept_index[clips]
        prompts = judge.project_text(feats.text_pooled[feats.prompt_index]).cpu()
        pred = (embs @ prompts.T).argmax(dim=1)
        correct = (pred == truth)
        per_concept = {}
        for c in truth.unique().tolist():
            m = truth == c
            per_concept[feats.concepts[c]] = float(correct[m].float().mean())
        # paraphrases: for each paraphrase round r, concept c is represented by its r-th paraphrase
        para_acc = None
        n_para = min((len(p) for p in feats.paraphrase_index), default=0)
        if n_para > 0:
            accs = []
            for r in range(n_para):
                t = judge.project_text(feats.text_pooled[[p[r] for p in feats.paraphrase_index]]).cpu()
                accs.append(float(((embs @ t.T).argmax(dim=1) == truth).float().mean()))
            para_acc = sum(accs) / len(accs)
        return {"n_clips": len(clips), "top1": float(correct.float().mean()), "paraphrase_top1": para_acc,
                "per_concept_top1": per_concept}
    finally:
        judge.train(was_training)


def evaluate_judge(corpus_dir: str | os.PathLike, judge: JudgeModel | str | os.PathLike | None = None,
                   split: str = "heldout", progress: bool = True) -> dict[str, Any]:
    """Zero-shot concept accuracy of a judge on a corpus split.

    Each clip (whole, zero-padded to ``segment_s``) is assigned the concept
    whose canonical prompt (``concepts.json``) has the highest cosine
    similarity. ``paraphrase_top1`` repeats that with the concepts'
    paraphrases (never training captions), averaged over paraphrase rounds.

    Returns:
        ``{"n_clips", "top1", "paraphrase_top1", "per_concept_top1"}``.
    """
    if split not in ("train", "heldout", "all"):
        raise SDSAudioError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    model = _judge_or_default(judge)
    feats = _corpus_features(Path(corpus_dir), model, None, progress, split=split)
    return _evaluate_features(model, feats, list(range(len(feats.lengths))))


# --------------------------------------------------------------------------- training
CHECKPOINT_NAME = "judge_checkpoint.safetensors"
FINAL_NAME = "judge.safetensors"
METRICS_NAME = "metrics.json"
CACHE_NAME = "mel_cache.safetensors"


def _lr_at(step: int, total: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0))))


def _save_checkpoint(path: Path, judge: JudgeModel, opt: torch.optim.Optimizer, step: int,
                     g: torch.Generator, history: list, train_args: dict) -> None:
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in judge.state_dict().items()}
    opt_state = opt.state_dict()
    for pid, st in opt_state["state"].items():
        for name, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
            tensors[f"optim.{pid}.{name}"] = t.detach().cpu().contiguous()
    tensors["rng.generator"] = g.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"format": FORMAT_NAME + "-checkpoint", "step": str(step), "config": json.dumps(judge.config.to_dict()),
            "train_args": json.dumps(train_args), "history": json.dumps(history)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _load_checkpoint(path: Path, judge: JudgeModel, opt: torch.optim.Optimizer, g: torch.Generator,
                     train_args: dict) -> tuple[int, list]:
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SDSAudioError(f"cannot read the judge checkpoint {path}: {exc}; delete it (or pass resume=False) "
                            "to start over", exit_code=1) from exc
    if meta.get("format") != FORMAT_NAME + "-checkpoint":
        raise SDSAudioError(f"{path} is not a judge training checkpoint; delete it or use another --out")
    saved_cfg = json.loads(meta["config"])
    if saved_cfg != judge.config.to_dict():
        raise SDSAudioError(f"{path} was trained with another judge config; use another --out directory "
                            "or pass resume=False to start over")
    saved_args = json.loads(meta.get("train_args", "{}"))
    fixed = ("batch_size", "segment_s", "seed", "corpus_fingerprint")
    diff = [k for k in fixed if saved_args.get(k) != train_args.get(k)]
    if diff:
        raise SDSAudioError(f"{path} was trained with other settings ({', '.join(diff)} differ); use another "
                            "--out directory or pass resume=False to start over")
    judge.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state = opt.state_dict()
    for pid in range(len([p for grp in state["param_groups"] for p in grp["params"]])):
        entries = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"optim.{pid}.")}
        if entries:
            state["state"][pid] = entries
    opt.load_state_dict(state)
    g.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), json.loads(meta.get("history", "[]"))


def _cpu_has_bf16() -> bool:
    """True when the CPU advertises native bfloat16 math (AMX-BF16 or AVX512-BF16; Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def train_judge(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, *, steps: int = 12000,
                batch_size: int = 64, segment_s: float = 2.0, lr: float = 2e-3, weight_decay: float = 1e-2,
                warmup_steps: int = 200, seed: int = 0, resume: bool = True, checkpoint_every: int = 250,
                eval_every: int = 1000, prompt_prob: float = 0.2, config: JudgeConfig | None = None,
                precision: str = "auto", num_threads: int | None = None, progress: bool = True,
                on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train the judge on a corpus; write ``judge.safetensors`` and ``metrics.json`` into ``out_dir``.

    Args:
        corpus_dir: corpus directory (``manifest.jsonl``, ``concepts.json``, audio).
        out_dir: created if needed; holds ``mel_cache.safetensors`` (features,
            reused across runs), ``judge_checkpoint.safetensors`` (every
            ``checkpoint_every`` steps), and at the end ``judge.safetensors``
            (fp16) and ``metrics.json``.
        steps: optimiser steps in total (a resumed run continues to this count).
        batch_size: clips per step.
        segment_s: training crop, seconds (also the judge's minimum input length).
        lr, weight_decay, warmup_steps: AdamW with warm-up and cosine decay.
        seed: seeds initialisation, batches and augmentation.
        resume: continue from ``out_dir``'s checkpoint when there is one.
        eval_every: held-out zero-shot accuracy every this many steps (0: only at the end).
        prompt_prob: probability of training on the canonical prompt instead of the caption.
        config: architecture (``segment_s`` overrides its ``segment_s``).
        precision: ``"fp32"``; ``"bf16"``: training forward passes under CPU
            bfloat16 autocast (about 1.7x faster on CPUs with AMX / AVX512-BF16,
            slower on CPUs without; same held-out accuracy in our comparison);
            ``"auto"``: bf16 when the CPU has native bf16, else fp32.
            Evaluation and the saved weights are fp32 / fp16.
        num_threads: ``torch.set_num_threads`` for the run (None: leave as is).
            On a machine shared with other jobs use 1: several intra-op threads
            on oversubscribed cores spend most of their time waiting.
        progress: show tqdm bars.
        on_step: called as ``on_step(step, {"loss": ..., "lr": ...})`` after every step.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from tqdm.auto import tqdm

    if steps < 1 or batch_size < 2:
        raise SDSAudioError(f"steps must be >= 1 and batch_size >= 2, got {steps} and {batch_size}")
    if precision not in ("fp32", "bf16", "auto"):
        raise SDSAudioError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    if precision == "auto":
        precision = "bf16" if _cpu_has_bf16() else "fp32"
    if num_threads:
        torch.set_num_threads(int(num_threads))
    root = Path(corpus_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(config or JudgeConfig(), segment_s=float(segment_s))
    started = time.time()

    torch.manual_seed(seed)
    judge = JudgeModel(cfg)
    feats = _corpus_features(root, judge, out / CACHE_NAME, progress)
    train_clips = torch.nonzero(feats.is_train).flatten()
    if train_clips.numel() == 0:
        raise SDSAudioError(f"corpus {root} has no clips in split 'train'")
    heldout_clips = torch.nonzero(~feats.is_train).flatten().tolist()
    by_concept = [train_clips[feats.concept_index[train_clips] == c] for c in range(len(feats.concepts))]
    by_concept_nonempty = [c for c in by_concept if c.numel() > 0]
    train_args = {"batch_size": batch_size, "segment_s": float(segment_s), "seed": seed, "lr": lr,
                  "precision": precision,
                  "weight_decay": weight_decay, "warmup_steps": warmup_steps, "steps": steps,
                  "prompt_prob": prompt_prob, "corpus_fingerprint": _corpus_fingerprint(root, cfg)}

    decay = [p for n, p in judge.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in judge.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    g = torch.Generator().manual_seed(seed)
    step, history = 0, []
    ckpt = out / CHECKPOINT_NAME
    if resume and ckpt.is_file():
        step, history = _load_checkpoint(ckpt, judge, opt, g, train_args)

    aug = _Augment()
    noise_bank = _white_noise_mel_power(judge)
    hop_s = cfg.hop_length / cfg.sample_rate
    n_frames = cfg.segment_frames
    prompt_of_concept = torch.tensor(feats.prompt_index)
    judge.train()
    judge.audio_encoder.to(memory_format=torch.channels_last)  # faster CPU convolutions (oneDNN)
    bar = tqdm(total=steps, initial=step, desc="judge", disable=not progress, dynamic_ncols=True)
    loss_avg = None
    stop = StepInterrupts()   # Ctrl-C / SIGTERM take effect after a whole step, which is checkpointed
    try:
        stop.install()
        while step < steps:
            clips = _sample_clips(by_concept_nonempty, batch_size, g)
            concept = feats.concept_index[clips]
            text_ids = feats.caption_index[clips].clone()
            use_prompt = torch.rand(batch_size, generator=g) < prompt_prob
            text_ids[use_prompt] = prompt_of_concept[concept[use_prompt]]
            logmel = _make_batch(feats, clips, n_frames, g, aug, noise_bank, hop_s)
            for grp in opt.param_groups:
                grp["lr"] = _lr_at(step, steps, lr, warmup_steps)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                a = judge.encode_features(logmel)
                t = judge.project_text(feats.text_pooled[text_ids])
            loss = _contrastive_loss(a, t, concept, judge.scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(judge.parameters(), 5.0)
            opt.step()
            step += 1
            lv = loss.detach().item()
            loss_avg = lv if loss_avg is None else 0.98 * loss_avg + 0.02 * lv
            bar.update(1)
            bar.set_postfix(loss=f"{loss_avg:.3f}", temp=f"{judge.temperature:.3f}")
            if on_step is not None:
                on_step(step, {"loss": lv, "lr": opt.param_groups[0]["lr"]})
            if eval_every and step % eval_every == 0 and step < steps:
                res = _evaluate_features(judge, feats, heldout_clips)
                history.append({"step": step, "loss": round(loss_avg, 4), "heldout_top1": res["top1"],
                                "heldout_paraphrase_top1": res["paraphrase_top1"],
                                "temperature": round(judge.temperature, 4),
                                "elapsed_s": round(time.time() - started, 1)})
                if progress:
                    bar.write(f"judge step {step}: loss {loss_avg:.3f}, held-out top-1 {res['top1']}, "
                              f"paraphrase top-1 {res['paraphrase_top1']}")
            if step % checkpoint_every == 0 or step == steps:
                _save_checkpoint(ckpt, judge, opt, step, g, history, train_args)
            elif stop.pending is not None:
                _save_checkpoint(ckpt, judge, opt, step, g, history, train_args)
            stop.check()
    finally:
        stop.restore()
        bar.close()

    judge.eval()
    heldout = _evaluate_features(judge, feats, heldout_clips)
    rng = torch.Generator().manual_seed(seed + 1)
    sub = train_clips[torch.randperm(train_clips.numel(), generator=rng)[:max(len(heldout_clips), 256)]]
    train_res = _evaluate_features(judge, feats, sub.tolist())
    final = save_judge(judge, out / FINAL_NAME, extra_metadata={"trained_steps": str(step)})
    metrics = {
        "heldout_top1": heldout["top1"], "heldout_paraphrase_top1": heldout["paraphrase_top1"],
        "train_top1": train_res["top1"], "n_heldout_clips": heldout["n_clips"],
        "n_train_clips": int(train_clips.numel()), "n_concepts": len(feats.concepts), "steps": step,
        "temperature": judge.temperature, "parameters": judge.num_parameters(),
        "weights": str(final), "weights_bytes": final.stat().st_size, "train_args": train_args,
        "config": cfg.to_dict(), "per_concept_heldout_top1": heldout["per_concept_top1"], "history": history,
        "seconds_this_run": round(time.time() - started, 1),
    }
    write_json_atomic(out / METRICS_NAME, metrics)
    os.chmod(out / METRICS_NAME, 0o644)
    return metrics
