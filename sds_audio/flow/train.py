"""``train_flow``: train the flow-matching DiT on a captioned corpus's codec latents.

Recipe:

1. Encode the corpus once with the frozen codec (:mod:`sds_audio.flow.latents`,
   cached as ``latents_train.safetensors`` / ``latents_heldout.safetensors`` in
   ``out_dir``), and every distinct caption once with the frozen MiniLM.
2. Normalise latents per channel with the training set's statistics (stored in
   the model's ``latent_mean`` / ``latent_std`` buffers).
3. Each step draws (from a generator seeded by ``(seed, step)``, so a resumed
   run draws exactly what an uninterrupted one would):

   - a window length uniform in ``[min_segment_s, segment_s]`` (one per batch;
     the model learns every length SDS and generation will ask for);
   - ``batch_size`` clips with replacement; a clip shorter than the window is
     taken whole followed by the codec's silence latents (its ``seconds`` is
     its own duration), a longer one is cropped (at its onset half of the time,
     at a uniform offset otherwise; ``seconds`` = the window);
   - flow times (logit-normal by default), Gaussian noise, and text dropout
     (``cond_dropout``; dropped rows use the model's null text);
   - token dropout (``token_dropout``): of the rows that keep their text, this
     fraction sees a single all-zero token instead of the caption's tokens but
     keeps the pooled sentence embedding, so the pooled path alone must carry
     the sound's identity. MiniLM's pooled embedding places unseen wordings
     near the right concept more reliably than its tokens match the training
     vocabulary, which is what prompts the corpus never used need;
   - text augmentation, for the same reason: with probability
     ``caption_augment`` a row's caption is replaced by one of
     ``caption_variants`` rewrites of it (:func:`~sds_audio.corpus.captions.rewrite_caption`:
     tags reordered or dropped, a framing such as "a clip of ..."; never the
     held-out paraphrase wording), encoded once up front; and ``text_noise``
     adds Gaussian noise to the captioned rows' embeddings, its norm a fraction
     drawn uniformly in ``[0, text_noise]`` of each token's and of the pooled
     embedding's norm (the pooled one renormalised to unit length, as MiniLM's
     is), so that nearby embeddings of new wordings land on the same sound.

   The loss is the plain CFM mean squared error over *all* frames, silence
   included: the model must learn to produce the codec's silence after
   ``seconds`` so that generation with a duration shorter than the window,
   and SDS on audio that decays to silence, stay in distribution.
4. AdamW, linear warm-up then cosine decay to 10 %, gradient clipping, an EMA
   of the weights (what is saved), a deterministic held-out loss, periodic
   checkpoints (``checkpoint.safetensors``: weights, EMA, optimiser state,
   step; no pickle) and resume.

5. At the end, a :class:`~sds_audio.flow.anchor.PromptAnchor` is fitted on the
   distinct training captions' pooled embeddings and saved with the EMA weights.

Outputs in ``out_dir``: ``flow.safetensors`` (EMA weights, float16, config in
the metadata, the prompt anchor), ``metrics.json``, ``checkpoint.safetensors``,
the latent caches.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from ..atomic import atomic_path, write_json_atomic
from ..corpus.dataset import read_manifest
from ..errors import SDSAudioError
from ..interrupts import StepInterrupts
from .anchor import fit_anchor
from .condition import FlowCondition
from .config import FlowConfig
from .dit import FlowModel
from .latents import LatentSet, latent_space_fingerprint, load_or_encode
from .path import cfm_loss, interpolate, sample_time
from .weights import save_flow

CHECKPOINT_NAME = "checkpoint.safetensors"
FLOW_NAME = "flow.safetensors"
METRICS_NAME = "metrics.json"
#: architecture fields train_flow derives from the codec and its own arguments
DERIVED_FIELDS = ("latent_channels", "latent_rate", "sample_rate", "max_duration_s", "cond_dropout", "time_sampling")


@dataclass
class TextBank:
    """Every distinct caption encoded once: ``tokens (n, N, 384)`` f16, ``mask (n, N)``, ``pooled (n, 384)``."""

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    index: dict[str, int]

    @classmethod
    def build(cls, captions: list[str], encoder: Any, chunk: int = 64, progress: bool = True) -> "TextBank":
        from tqdm.auto import tqdm

        unique = list(dict.fromkeys(captions))
        parts = []
        for i in tqdm(range(0, len(unique), chunk), desc="encoding captions", disable=not progress, leave=False):
            parts.append(encoder.encode(unique[i:i + chunk]))
        n_max = max(p[0].shape[1] for p in parts)
        tokens = torch.cat([torch.nn.functional.pad(p[0], (0, 0, 0, n_max - p[0].shape[1])) for p in parts])
        mask = torch.cat([torch.nn.functional.pad(p[1], (0, n_max - p[1].shape[1])) for p in parts])
        pooled = torch.cat([p[2] for p in parts])
        return cls(tokens.half(), mask, pooled, {c: i for i, c in enumerate(unique)})

    def condition(self, captions: list[str], seconds: torch.Tensor, drop: torch.Tensor) -> FlowCondition:
        """The :class:`FlowCondition` of ``captions`` (each must be in the bank)."""
        idx = torch.tensor([self.index[c] for c in captions])
        mask = self.mask[idx]
        n = max(int(mask.sum(1).max()), 1)
        return FlowCondition(self.tokens[idx, :n].float(), mask[:, :n], self.pooled[idx], seconds, drop)


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU generator that depends only on ``(seed, step, stream)``."""
    key = hashlib.sha256(f"{seed}:{step}:{stream}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(key[:8], "little") & ((1 << 63) - 1))


def caption_rewrites(captions: list[str], n: int, seed: int) -> dict[str, list[str]]:
    """``n`` distinct-where-possible rewrites of every distinct caption (deterministic in ``seed``)."""
    import numpy as np

    from ..corpus.captions import rewrite_caption

    out = {}
    for c in dict.fromkeys(captions):
        rng = np.random.default_rng([seed, int.from_bytes(hashlib.sha256(c.encode()).digest()[:4], "little")])
        variants = list(dict.fromkeys(rewrite_caption(c, rng) for _ in range(2 * n)))
        out[c] = [variants[i % len(variants)] for i in range(n)]
    return out


def perturb_text(cond: FlowCondition, rows: torch.Tensor, text_noise: float, generator: torch.Generator) -> None:
    """Add relative Gaussian noise (norm fraction ~ U[0, text_noise]) to ``rows``' tokens and pooled embedding."""
    b, n, d = cond.tokens.shape
    scale = torch.rand(b, generator=generator) * text_noise * rows.float()
    tok_noise = torch.randn(b, n, d, generator=generator)
    tok_noise = tok_noise / tok_noise.norm(dim=-1, keepdim=True) * cond.tokens.norm(dim=-1, keepdim=True)
    cond.tokens.add_(tok_noise * scale[:, None, None])
    pooled_noise = torch.randn(b, d, generator=generator)
    pooled_noise = pooled_noise / pooled_noise.norm(dim=-1, keepdim=True) * cond.pooled.norm(dim=-1, keepdim=True)
    pooled = cond.pooled + pooled_noise * scale[:, None]
    cond.pooled = torch.where(rows[:, None], torch.nn.functional.normalize(pooled, dim=-1)
                              * cond.pooled.norm(dim=-1, keepdim=True), cond.pooled)


def sample_batch(latents: LatentSet, text: TextBank, model: FlowModel, batch_size: int, min_frames: int,
                 generator: torch.Generator, cond_dropout: float, onset_prob: float = 0.5,
                 token_dropout: float = 0.0, rewrites: Mapping[str, list[str]] | None = None,
                 caption_augment: float = 0.0, text_noise: float = 0.0) -> tuple[torch.Tensor, FlowCondition]:
    """One training batch: normalised latents ``(B, D, L_b)`` and their conditioning (see the module docstring)."""
    p = model.config.patch_size
    max_frames = latents.window_frames
    length = int(torch.randint(min_frames, max_frames + 1, (1,), generator=generator))
    length = min(max_frames, max(p, round(length / p) * p))
    clips = torch.randint(0, len(latents), (batch_size,), generator=generator)
    onset = torch.rand(batch_size, generator=generator) < onset_prob
    u = torch.rand(batch_size, generator=generator)
    drop = torch.rand(batch_size, generator=generator) < cond_dropout
    xs, seconds = [], []
    for i, c in enumerate(clips.tolist()):
        n = int(latents.n_frames[c])
        if n <= length or bool(onset[i]):
            offset = 0
        else:
            offset = int(u[i] * (n - length + 1))
        offset = min(offset, max_frames - length)
        xs.append(latents.latents[c, :, offset:offset + length])
        seconds.append(min(float(latents.seconds[c]) - offset / latents.latent_rate, length / latents.latent_rate))
    x0 = model.normalize(torch.stack(xs).float())
    captions = [latents.captions[c] for c in clips.tolist()]
    if rewrites and caption_augment > 0:
        swap = (torch.rand(batch_size, generator=generator) < caption_augment).tolist()
        pick = torch.randint(0, 1 << 30, (batch_size,), generator=generator).tolist()
        captions = [rewrites[c][k % len(rewrites[c])] if s else c for c, s, k in zip(captions, swap, pick)]
    cond = text.condition(captions, torch.tensor(seconds), drop)
    if text_noise > 0:
        perturb_text(cond, ~drop, text_noise, generator)
    if token_dropout > 0:
        hide = (torch.rand(batch_size, generator=generator) < token_dropout) & ~drop
        cond.tokens[hide] = 0.0
        cond.mask[hide] = False
        cond.mask[hide, 0] = True
    return x0, cond


def lr_at(step: int, steps: int, lr: float, warmup_steps: int, final_fraction: float = 0.1) -> float:
    """Linear warm-up over ``warmup_steps``, then cosine decay to ``final_fraction * lr`` at ``steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return lr * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress)))


@torch.no_grad()
def update_ema(ema: FlowModel, model: FlowModel, decay: float) -> None:
    """``ema <- decay * ema + (1 - decay) * model`` over parameters (buffers copied)."""
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


@torch.no_grad()
def heldout_loss(model: FlowModel, latents: LatentSet, text: TextBank, seed: int, max_clips: int = 64,
                 batch_size: int = 16) -> float:
    """CFM loss on up to ``max_clips`` held-out clips (full window) at fixed noise and flow times."""
    n = min(len(latents), max_clips)
    g = step_generator(seed, -1, stream=7)
    s_all = torch.linspace(0.05, 0.95, n)[torch.randperm(n, generator=g)]
    total = 0.0
    for i in range(0, n, batch_size):
        idx = list(range(i, min(n, i + batch_size)))
        x0 = model.normalize(latents.latents[idx].float())
        noise = torch.randn(x0.shape, generator=g)
        s = s_all[idx]
        cond = text.condition([latents.captions[j] for j in idx], latents.seconds[idx],
                              torch.zeros(len(idx), dtype=torch.bool))
        v = model(interpolate(noise, x0, s), s, cond)
        total += float(cfm_loss(v, noise, x0)) * len(idx)
    return total / n


# ------------------------------------------------------------------ checkpoints
def save_checkpoint(path: Path, model: FlowModel, ema: FlowModel, optimizer: torch.optim.Optimizer, step: int,
                    fingerprint: str, history: list[dict[str, Any]]) -> None:
    """Weights, EMA, optimiser state and progress in one ``.safetensors`` (no pickle)."""
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    opt = optimizer.state_dict()
    for idx, state in opt["state"].items():
        for key, value in state.items():
            tensors[f"optim.{idx}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    metadata = {"step": str(step), "fingerprint": fingerprint, "config": model.config.to_json(),
                "param_groups": json.dumps(opt["param_groups"]), "history": json.dumps(history)}
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_checkpoint(path: Path, model: FlowModel, ema: FlowModel, optimizer: torch.optim.Optimizer,
                    fingerprint: str) -> tuple[int, list[dict[str, Any]]]:
    """Restore a checkpoint written by :func:`save_checkpoint`; returns ``(step, history)``."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise SDSAudioError(f"checkpoint {path} is broken ({exc}): delete it to start over", exit_code=1) from exc
    if meta.get("fingerprint") != fingerprint:
        raise SDSAudioError(f"checkpoint {path} belongs to another run (different corpus, codec, model or "
                            "settings): use another --out directory, or delete the checkpoint to start over "
                            "(--no-resume)", exit_code=1)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})
    return int(meta["step"]), json.loads(meta.get("history", "[]"))


# --------------------------------------------------------------------- training
def build_config(codec: torch.nn.Module, segment_s: float, cond_dropout: float, time_sampling: str,
                 model_config: Mapping[str, Any] | None) -> FlowConfig:
    """The flow architecture: ``model_config`` overrides plus fields fixed by the codec and the run."""
    overrides = dict(model_config or {})
    clash = sorted(set(overrides) & set(DERIVED_FIELDS))
    if clash:
        raise SDSAudioError(f"model_config may not set {clash}: they follow from the codec and train_flow's "
                            "arguments")
    return FlowConfig.from_dict({**overrides, "latent_channels": int(codec.latent_channels),
                                 "latent_rate": float(codec.sample_rate) / int(codec.hop_length),
                                 "sample_rate": int(codec.sample_rate), "max_duration_s": float(segment_s),
                                 "cond_dropout": float(cond_dropout), "time_sampling": time_sampling})


def _load_codec(codec_path: str | os.PathLike | torch.nn.Module) -> torch.nn.Module:
    if isinstance(codec_path, torch.nn.Module):
        return codec_path.eval().requires_grad_(False)
    from ..codec import load_codec

    return load_codec(codec_path).eval().requires_grad_(False)


def flow_recipe() -> dict[str, Any]:
    """The settings ``sds-audio train flow`` starts from (command-line flags override them).

    The shipped prior is this recipe run to 20,000 steps (``--steps 20000``), then 6,000 steps of
    text augmentation from those weights (``--init-from RUN/flow.safetensors --caption-augment 0.5
    --text-noise 0.5 --lr 2e-4 --steps 6000``); the model card ``assets/flow.md`` has the figures.

    The default :class:`FlowConfig` DiT (width 256, depth 6) on 3 s windows of codec
    latents, 32 windows per step, AdamW 5e-4 with 300 warm-up steps, EMA 0.999,
    10 % caption dropout for classifier-free guidance, 30 % token dropout (of the
    captioned rows, see the module docstring); 10,000 steps (about 70 min at ~2.5
    steps/s on two CPU cores once the latents are cached).

    Measured at 1,000 steps (20 concepts, 160 generations per prompt kind, judge
    top-1 canonical / paraphrase): tokens + pooled 25.0 / 14.4 %, the same with a
    LayerNorm on the pooled embedding 25.6 / 12.5 %, pooled embedding alone (no
    cross-attention) 0.6 / 3.1 % without that LayerNorm and 13.8 / 11.9 % with it.
    The pooled path generalises to new wordings (paraphrase / canonical 0.86 against
    0.49) but learns the sounds more slowly; token dropout trains both paths.
    """
    return {"steps": 10000, "batch_size": 32, "segment_s": 3.0, "min_segment_s": 0.5, "lr": 5e-4,
            "warmup_steps": 300, "checkpoint_every": 250, "eval_every": 500, "cond_dropout": 0.1,
            "token_dropout": 0.3, "ema_decay": 0.999}


def train_flow(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike,
               codec_path: str | os.PathLike | torch.nn.Module, *, steps: int = 20000, batch_size: int = 32,
               segment_s: float = 4.0, min_segment_s: float = 0.5, lr: float = 5e-4, seed: int = 0,
               resume: bool = True, checkpoint_every: int = 500, cond_dropout: float = 0.1,
               model_config: Mapping[str, Any] | None = None, time_sampling: str = "logit_normal",
               warmup_steps: int = 500, ema_decay: float = 0.999, weight_decay: float = 0.0,
               grad_clip: float = 1.0, token_dropout: float = 0.0, eval_every: int = 500, log_every: int = 50,
               caption_augment: float = 0.0, caption_variants: int = 4, text_noise: float = 0.0,
               init_from: str | os.PathLike | None = None, threads: int | None = None, text_encoder: Any = None,
               progress: bool = True) -> dict[str, Any]:
    """Train a :class:`FlowModel` on ``corpus_dir`` with the frozen codec at ``codec_path``.

    Args:
        corpus_dir: corpus directory (``manifest.jsonl`` etc., see :mod:`sds_audio.corpus.dataset`).
        out_dir: where checkpoints, caches, ``flow.safetensors`` and ``metrics.json`` go (created).
        codec_path: a trained codec ``.safetensors`` (or a :class:`~sds_audio.codec.Codec`).
        steps: optimiser steps in total (a resumed run continues to this number).
        batch_size: clips per step.
        segment_s: the training window in seconds (the prior's ``max_duration_s``).
        min_segment_s: shortest window drawn.
        lr: peak learning rate (AdamW).
        seed: seeds the initialisation and every step's draws.
        resume: continue from ``out_dir/checkpoint.safetensors`` when present.
        checkpoint_every: steps between checkpoints.
        cond_dropout: probability of replacing a clip's caption with the null text.
        model_config: architecture overrides (``width``, ``depth``, ``heads``,
            ``patch_size``, ``mlp_ratio``, ...; see :class:`FlowConfig`).
        time_sampling: ``"logit_normal"`` or ``"uniform"`` flow-time density.
        warmup_steps, ema_decay, weight_decay, grad_clip: optimiser settings.
        token_dropout: fraction of the captioned rows trained on the pooled
            embedding alone (their tokens replaced by one zero token).
        caption_augment: probability that a row's caption is replaced by one of
            its ``caption_variants`` rewrites (see the module docstring).
        caption_variants: rewrites encoded per distinct caption.
        text_noise: largest relative norm of the Gaussian noise added to the
            captioned rows' text embeddings (0 disables).
        init_from: start from the weights of this flow ``.safetensors`` (model
            and EMA; a fresh optimiser; its architecture must equal the one this
            run builds) instead of a random initialisation.
        eval_every: steps between held-out losses (EMA weights); 0 disables.
        log_every: steps between entries of the loss history.
        threads: ``torch.set_num_threads`` for the run (None: leave as is).
        text_encoder: a :class:`sds_audio.text.TextEncoder` to reuse (default: a new one).
        progress: show tqdm bars.

    Returns:
        The metrics written to ``metrics.json``.
    """
    if steps < 1 or batch_size < 1 or checkpoint_every < 1 or log_every < 1:
        raise SDSAudioError("steps, batch_size, checkpoint_every and log_every must be positive")
    if not 0.0 <= token_dropout < 1.0:
        raise SDSAudioError(f"token_dropout must lie in [0, 1), got {token_dropout}")
    if not 0.0 <= caption_augment <= 1.0 or caption_variants < 1 or text_noise < 0:
        raise SDSAudioError(f"need caption_augment in [0, 1], caption_variants >= 1 and text_noise >= 0, got "
                            f"{caption_augment}, {caption_variants}, {text_noise}")
    if not 0 < min_segment_s <= segment_s:
        raise SDSAudioError(f"need 0 < min_segment_s <= segment_s, got {min_segment_s} and {segment_s}")
    if threads is not None:
        torch.set_num_threads(int(threads))
    from tqdm.auto import tqdm

    from ..text import TextEncoder

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    codec = _load_codec(codec_path)
    config = build_config(codec, segment_s, cond_dropout, time_sampling, model_config)
    train_set = load_or_encode(corpus_dir, codec, "train", segment_s, out / "latents_train.safetensors", progress)
    heldout_set = None
    if any(r["split"] == "heldout" for r in read_manifest(corpus_dir)):
        heldout_set = load_or_encode(corpus_dir, codec, "heldout", segment_s, out / "latents_heldout.safetensors",
                                     progress)
    encoder = text_encoder if text_encoder is not None else TextEncoder()
    rewrites = caption_rewrites(train_set.captions, caption_variants, seed) if caption_augment > 0 else {}
    text = TextBank.build(train_set.captions + (heldout_set.captions if heldout_set is not None else [])
                          + [v for vs in rewrites.values() for v in vs], encoder, progress=progress)

    torch.manual_seed(seed)
    model = FlowModel(config)
    mean, std = train_set.channel_stats()
    model.latent_mean.copy_(mean)
    model.latent_std.copy_(std)
    init_sha = None
    if init_from is not None:
        from .weights import load_flow

        initial = load_flow(init_from)
        if initial.config != config:
            raise SDSAudioError(f"init_from {init_from} holds another flow architecture than this run builds "
                                "(model_config, segment_s, cond_dropout, time_sampling and the codec must match)")
        model.load_state_dict({k: v for k, v in initial.state_dict().items() if not k.startswith("anchor.")})
        init_sha = hashlib.sha256(Path(init_from).read_bytes()).hexdigest()
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=weight_decay)
    run = {"steps": steps, "batch_size": batch_size, "segment_s": segment_s, "min_segment_s": min_segment_s,
           "lr": lr, "seed": seed, "warmup_steps": warmup_steps, "ema_decay": ema_decay,
           "weight_decay": weight_decay, "grad_clip": grad_clip, "token_dropout": token_dropout}
    # recorded only when used, so that runs from before these options keep their fingerprints (and resume)
    extra = {"caption_augment": caption_augment, "caption_variants": caption_variants if caption_augment else None,
             "text_noise": text_noise, "init_from_sha256": init_sha}
    run.update({k: v for k, v in extra.items() if v})
    fingerprint = hashlib.sha256(json.dumps(
        {"config": config.to_dict(), "run": {k: v for k, v in run.items() if k != "steps"},
         "codec": latent_space_fingerprint(codec), "corpus": (train_set.captions, train_set.n_frames.tolist())},
        sort_keys=True).encode()).hexdigest()
    ckpt_path = out / CHECKPOINT_NAME
    start, history = 0, []
    if resume and ckpt_path.is_file():
        start, history = load_checkpoint(ckpt_path, model, ema, optimizer, fingerprint)

    last = history[-1] if history else {}  # what a resumed run that has no steps left reports

    def metrics_at(done: int) -> dict[str, Any]:
        elapsed = time.perf_counter() - t0
        ran = done - start
        return {"steps": done, "target_steps": steps, "complete": done >= steps, "resumed_from": start,
                "steps_this_run": ran, "elapsed_s": elapsed,
                "steps_per_s": ran / elapsed if ran > 0 and elapsed > 0 else None,
                "final_loss": sum(recent) / len(recent) if recent else last.get("loss"),
                "heldout_loss": val_loss if val_loss is not None else last.get("heldout_loss"),
                "n_params": model.n_params, "train_clips": len(train_set),
                "heldout_clips": len(heldout_set) if heldout_set is not None else 0,
                "latent_frames_per_window": train_set.window_frames, "config": config.to_dict(), "run": run,
                "history": history}

    min_frames = max(1, math.ceil(min_segment_s * train_set.latent_rate))
    model.train()
    t0 = time.perf_counter()
    window_losses: list[float] = []
    recent: collections.deque[float] = collections.deque(maxlen=100)  # for final_loss: mean of the last 100 steps
    val_loss = None
    bar = tqdm(range(start, steps), initial=start, total=steps, desc="train flow", disable=not progress)
    stop = StepInterrupts()   # Ctrl-C / SIGTERM take effect after a whole step, which is checkpointed

    def checkpoint_on_stop(step: int) -> None:
        save_checkpoint(ckpt_path, model, ema, optimizer, step + 1, fingerprint, history)

    for step in stop.steps(bar, on_stop=checkpoint_on_stop):
        g = step_generator(seed, step)
        x0, cond = sample_batch(train_set, text, model, batch_size, min_frames, g, cond_dropout,
                                token_dropout=token_dropout, rewrites=rewrites, caption_augment=caption_augment,
                                text_noise=text_noise)
        s = sample_time(batch_size, g, time_sampling)
        noise = torch.randn(x0.shape, generator=g)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup_steps)
        loss = cfm_loss(model(interpolate(noise, x0, s), s, cond), noise, x0)
        if not torch.isfinite(loss):
            raise SDSAudioError(f"flow training diverged at step {step} (loss {float(loss)}): lower --lr",
                                exit_code=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        update_ema(ema, model, min(ema_decay, (1 + step) / (10 + step)))
        window_losses.append(float(loss.detach()))
        recent.append(window_losses[-1])
        done = step + 1
        if eval_every and heldout_set is not None and (done % eval_every == 0 or done == steps):
            val_loss = heldout_loss(ema, heldout_set, text, seed)
        if done % log_every == 0 or done == steps:
            entry = {"step": done, "loss": sum(window_losses) / len(window_losses), "lr": lr_at(step, steps, lr,
                                                                                               warmup_steps)}
            if val_loss is not None:
                entry["heldout_loss"] = val_loss
            history.append(entry)
            window_losses = []
            shown = {"loss": f"{entry['loss']:.4f}"}
            if val_loss is not None:
                shown["val"] = f"{val_loss:.4f}"
            bar.set_postfix(shown)
        if done % checkpoint_every == 0 or done == steps:
            save_checkpoint(ckpt_path, model, ema, optimizer, done, fingerprint, history)
            if done < steps:  # progress for whoever watches a long run
                write_json_atomic(out / METRICS_NAME, metrics_at(done))
    bar.close()
    concept_of = dict(zip(train_set.captions, train_set.concepts))    # distinct captions, first-seen order
    ema.anchor = fit_anchor(text.pooled[[text.index[c] for c in concept_of]], list(concept_of.values()),
                            list(concept_of))
    metrics = metrics_at(steps)
    save_flow(ema, out / FLOW_NAME, extra_metadata={
        "codec_latent_sha256": latent_space_fingerprint(codec),
        "training": json.dumps({k: metrics[k] for k in ("steps", "final_loss", "heldout_loss", "train_clips")}
                               | {"run": run})})
    write_json_atomic(out / METRICS_NAME, metrics)
    return metrics


__all__ = ["train_flow", "flow_recipe", "TextBank", "sample_batch", "caption_rewrites", "perturb_text", "lr_at", "step_generator", "build_config",
           "save_checkpoint", "load_checkpoint", "heldout_loss"]
