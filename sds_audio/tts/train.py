"""``train_tts``: train the speech model on any LJSpeech-layout directory (``sds-audio train tts``).

Recipe:

1. Encode the corpus once in the model's frame space (:mod:`sds_audio.tts.features`:
   codec latents or log-mel frames) and with the front end
   (:func:`sds_audio.tts.data.build_cache`, ``cache.safetensors`` in ``out_dir``);
   per-channel statistics of the training split become the model's
   normalisation buffers. ``init_from`` copies every tensor of another speech
   model whose name and shape fit (a warm start across frame spaces: the
   transformer blocks carry over, the frame projections start fresh).
2. Each step draws, from generators seeded by ``(seed, step)`` (so a resumed
   run draws what an uninterrupted one would), a run of utterances of similar
   length from the length-sorted training split: as many as fit
   ``frames_per_batch`` padded frames, at most ``max_batch``; then
   :meth:`~sds_audio.tts.model.TTSModel.losses` (flow + prior + duration). For log-mel
   models, ``voice_warp_share`` of the rows have their frequency axis scaled by a
   factor drawn log-uniformly within ``exp(+-voice_warp)``
   (:func:`~sds_audio.tts.features.warp_mel_frames`): prompt, speaker span and
   target alike, so the model meets a continuum of voices and must read the
   voice from its prompt; with ``voice_eq`` those rows also get a smooth
   equaliser curve of three cosines with coefficients uniform in
   ``+-voice_eq`` (:func:`~sds_audio.tts.features.tilt_mel_frames`).
3. AdamW (betas 0.9, 0.99), linear warm-up then cosine decay to 10 %,
   gradient-norm clipping, an EMA of the weights (what is saved).
4. Every ``checkpoint_every`` steps, and after ``checkpoint_s`` seconds when at
   least ``log_every`` steps were made since the last one: ``checkpoint.safetensors`` (weights, EMA, optimiser state, step,
   history; atomic, no pickle), ``tts.safetensors`` (EMA weights, float16, with
   the built-in voice prompt) and a line of ``metrics.jsonl`` with the
   validation losses. A stopped run (Ctrl-C, ``kill``) restarts from the last
   checkpoint with the same command.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..errors import SDSAudioError
from .alignment import sequence_mask
from .config import TTSConfig
from .data import SpeechCache, build_cache, collate
from .features import tilt_mel_frames, warp_mel_frames
from .frontend import Frontend
from .model import TTSModel
from .weights import save_tts_model

CHECKPOINT_FORMAT = "sds-audio-tts-checkpoint"


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator seeded by ``(seed, step)``."""
    digest = hashlib.sha256(f"tts:{seed}:{step}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def lr_at(step: int, steps: int, lr: float, warmup_steps: int, final_fraction: float = 0.1) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``final_fraction * lr`` at ``steps``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return lr * (final_fraction + (1.0 - final_fraction) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def pick_batch(order: list[int], cache: SpeechCache, generator: torch.Generator, frames_per_batch: int,
               max_batch: int) -> list[int]:
    """Utterances of similar length: from a random position of the length-sorted ``order``, as many
    consecutive ones as fit ``frames_per_batch`` padded frames (at least one, at most ``max_batch``)."""
    start = int(torch.randint(len(order), (1,), generator=generator))
    chosen = [order[start]]
    longest = cache.frames(order[start])
    lo, hi = start - 1, start + 1
    while len(chosen) < max_batch:
        step_up = hi < len(order) and (lo < 0 or bool(torch.rand(1, generator=generator) < 0.5))
        if not step_up and lo < 0:
            break
        candidate = order[hi] if step_up else order[lo]
        new_longest = max(longest, cache.frames(candidate))
        if new_longest * (len(chosen) + 1) > frames_per_batch:
            break
        chosen.append(candidate)
        longest = new_longest
        if step_up:
            hi += 1
        else:
            lo -= 1
    return chosen


def latent_stats(cache: SpeechCache, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation ``(D,)`` of the latents of ``indices``."""
    total = torch.zeros(cache.latents.shape[0], dtype=torch.float64)
    total_sq = torch.zeros_like(total)
    n = 0
    for i in indices:
        z = cache.item(i)[1].double()
        total += z.sum(-1)
        total_sq += (z * z).sum(-1)
        n += z.shape[-1]
    mean = total / n
    std = (total_sq / n - mean * mean).clamp_min(1e-8).sqrt()
    return mean.float(), std.float()


def warm_start(model: TTSModel, path: str | os.PathLike) -> list[str]:
    """Copy into ``model`` every parameter of the speech model at ``path`` whose name and shape fit.

    Normalisation buffers and the built-in voice are the new model's own. Returns the names copied.

    Raises:
        SDSAudioError: ``path`` is not a speech model, or nothing fits.
    """
    from safetensors.torch import load_file

    from .weights import tts_metadata

    tts_metadata(path)
    source = load_file(str(path))
    own = model.state_dict()
    buffers = {name for name, _ in model.named_buffers()}
    copied = [name for name, value in source.items()
              if name in own and name not in buffers and own[name].shape == value.shape]
    if not copied:
        raise SDSAudioError(f"no tensor of {path} fits this model's architecture")
    with torch.no_grad():
        for name in copied:
            own[name].copy_(source[name].to(own[name].dtype))
    return copied


def pick_default_prompt(cache: SpeechCache, model: TTSModel, voice: str | None, seconds: float = 2.5) -> torch.Tensor:
    """Normalised latents ``(D, T)`` of the built-in voice: the validation utterance of ``voice`` (default:
    the first speaker) whose length is closest to ``seconds``, cut to at most ``seconds``."""
    names = cache.speakers
    if voice is not None and voice not in names:
        raise SDSAudioError(f"default voice {voice!r} is not a speaker of the corpus ({', '.join(names)})")
    speaker = names.index(voice) if voice is not None else 0
    target = int(round(seconds * model.config.latent_rate))
    candidates = [i for i in range(len(cache)) if int(cache.speaker[i]) == speaker and cache.splits[i] != "train"]
    candidates = candidates or [i for i in range(len(cache)) if int(cache.speaker[i]) == speaker]
    best = min(candidates, key=lambda i: abs(cache.frames(i) - target))
    z = cache.item(best)[1][:, :target]
    return model.normalize(z[None].to(model.latent_mean))[0]


def _save_checkpoint(path: Path, model: TTSModel, ema: TTSModel, optimizer: torch.optim.Optimizer, step: int,
                     history: list[dict[str, Any]], settings: dict[str, Any]) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update({f"ema.{k}": v.detach().cpu().contiguous() for k, v in ema.state_dict().items()})
    state = optimizer.state_dict()
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"opt.{idx}.{name}"] = value.detach().cpu().contiguous().clone()
    meta = {"format": CHECKPOINT_FORMAT, "step": str(step), "config": model.config.to_json(),
            "param_groups": json.dumps(state["param_groups"]), "history": json.dumps(history),
            "settings": json.dumps(settings, sort_keys=True)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _load_checkpoint(path: Path, model: TTSModel, ema: TTSModel, optimizer: torch.optim.Optimizer,
                     settings: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        raise SDSAudioError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from exc
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise SDSAudioError(f"{path} is not a tts training checkpoint; delete it or use another --out")
    saved = json.loads(meta["settings"])
    differ = sorted(k for k in ("seed", "frames_per_batch", "max_batch") if saved.get(k) != settings.get(k))
    if differ or TTSConfig.from_json(meta["config"]) != model.config:
        raise SDSAudioError(f"checkpoint {path} belongs to another run (config or {differ} differ); "
                            "use another --out or delete it")
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    ema.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("ema.")})
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, idx, name = key.split(".", 2)
            per_param.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": json.loads(meta["param_groups"])})
    return int(meta["step"]), json.loads(meta["history"])


@torch.no_grad()
def validation_losses(model: TTSModel, cache: SpeechCache, indices: list[int], seed: int) -> dict[str, float]:
    """Flow / prior / duration losses of ``indices`` (batches of 8, fixed random draws)."""
    model.eval()
    sums = {"flow": 0.0, "prior": 0.0, "duration": 0.0}
    n = 0
    for k in range(0, len(indices), 8):
        batch = collate([cache.item(i) for i in indices[k:k + 8]])
        symbols, text_lengths, z, frame_lengths = batch
        losses = model.losses(symbols, text_lengths, model.normalize(z), frame_lengths,
                              step_generator(seed + 7919, k))
        for name in sums:
            sums[name] += float(getattr(losses, name))
        n += 1
    model.train()
    return {name: value / max(n, 1) for name, value in sums.items()}


def train_tts(data_dir: str | os.PathLike, out_dir: str | os.PathLike, *, steps: int = 20000,
              frames_per_batch: int = 1600, max_batch: int = 16, lr: float = 5e-4, warmup_steps: int = 200,
              seed: int = 0, config: TTSConfig | None = None, codec_path: str | os.PathLike | None = None,
              checkpoint_every: int = 250, checkpoint_s: float = 300.0, ema_decay: float = 0.995,
              grad_clip: float = 1.0, max_seconds: float = 12.0, default_voice: str | None = None,
              limit: int | None = None, progress: bool = True, log_every: int = 25,
              init_from: str | os.PathLike | None = None, voice_warp_share: float = 0.5,
              voice_warp: float = 0.15, voice_eq: float = 0.0,
              max_steps_this_run: int | None = None, max_seconds_this_run: float | None = None) -> dict[str, Any]:
    """Train (or resume) a speech model on ``data_dir`` into ``out_dir``.

    Args:
        steps: total optimiser steps of the run (across resumes).
        frames_per_batch, max_batch: batch size as padded latent frames / utterances.
        max_seconds: longer utterances are left out.
        default_voice: corpus speaker whose validation utterance becomes the built-in voice.
        limit: use only the first ``limit`` utterances of ``metadata.csv``.
        config: the architecture (default ``TTSConfig()``, codec latents; :meth:`TTSConfig.for_mel` for log-mel).
        codec_path: the codec of ``"codec"`` features (default: the shipped one).
        voice_warp_share, voice_warp: share of rows whose voice is warped, and the largest log frequency
            factor; ``voice_eq``: largest coefficient (natural-log units) of the equaliser curve of warped rows
            (log-mel models only).
        init_from: a speech model's ``.safetensors`` to start from (tensors whose name and shape fit; ignored
            when the run resumes from its own checkpoint).
        max_steps_this_run, max_seconds_this_run: stop (with a checkpoint) after this many steps / seconds of
            this call.

    Returns:
        The last metrics entry (also in ``metrics.jsonl``).
    """
    from .features import load_features

    if steps < 1 or frames_per_batch < 1 or max_batch < 1:
        raise SDSAudioError("steps, frames_per_batch and max_batch must be positive")
    if not 0.0 <= voice_warp_share <= 1.0 or not 0.0 <= voice_warp < 0.7 or not 0.0 <= voice_eq <= 2.0:
        raise SDSAudioError("voice_warp_share must lie in [0, 1], voice_warp in [0, 0.7) and voice_eq in [0, 2]")
    config = config or TTSConfig()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    features = load_features(config, codec_path)
    if config.features == "codec" and (features.sample_rate != config.sample_rate
                                       or features.channels != config.latent_channels):
        config = config.replace(sample_rate=features.sample_rate, latent_channels=features.channels,
                                latent_rate=features.frame_rate)
    frontend = Frontend(config.symbols, config.language)
    cache = build_cache(data_dir, out_dir / "cache.safetensors", features, frontend, progress=progress, limit=limit)
    max_frames = int(max_seconds * config.latent_rate)
    train_idx = cache.indices("train", max_frames)
    valid_idx = cache.indices("valid", max_frames)[:32]
    if not train_idx:
        raise SDSAudioError(f"{data_dir} has no usable training utterance (train split, <= {max_seconds} s, "
                            "more frames than symbols)")
    if default_voice is None and "slt" in cache.speakers:
        default_voice = "slt"
    if default_voice is not None and default_voice not in cache.speakers:
        raise SDSAudioError(f"default voice {default_voice!r} is not a speaker of the corpus "
                            f"({', '.join(cache.speakers)})")
    torch.manual_seed(seed)
    model = TTSModel(config)
    mean, std = latent_stats(cache, train_idx)
    model.latent_mean.copy_(mean)
    model.latent_std.copy_(std)
    if init_from is not None:
        warm_start(model, init_from)
    ema = copy.deepcopy(model).requires_grad_(False)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.99), weight_decay=0.01)
    settings = {"seed": seed, "frames_per_batch": frames_per_batch, "max_batch": max_batch, "steps": steps,
                "voice_warp_share": voice_warp_share, "voice_warp": voice_warp, "voice_eq": voice_eq,
                "lr": lr, "data_dir": str(data_dir), "max_seconds": max_seconds}
    ckpt = out_dir / "checkpoint.safetensors"
    step, history = 0, []
    if ckpt.is_file():
        step, history = _load_checkpoint(ckpt, model, ema, optimizer, settings)
    order = sorted(train_idx, key=cache.frames)

    def save(done: int) -> dict[str, Any]:
        entry = {"step": done, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                 "valid": validation_losses(ema, cache, valid_idx, seed) if valid_idx else {}}
        history.append(entry)
        _save_checkpoint(ckpt, model, ema, optimizer, done, history, settings)
        export = copy.deepcopy(ema)
        export.set_default_prompt(pick_default_prompt(cache, ema, default_voice))
        save_tts_model(export, out_dir / "tts.safetensors",
                       extra_metadata={"steps": str(done), "data": str(data_dir),
                                       "default_voice": default_voice or cache.speakers[0]})
        with open(out_dir / "metrics.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")
        return entry

    model.train()
    last_save, start_step, window = time.time(), step, []
    last_saved_step = step
    started = time.time()
    entry: dict[str, Any] = {}
    try:
        while step < steps and (max_steps_this_run is None or step - start_step < max_steps_this_run) and \
                (max_seconds_this_run is None or time.time() - started < max_seconds_this_run):
            g = step_generator(seed, step)
            torch.manual_seed(int(torch.randint(2 ** 62, (1,), generator=g)))
            symbols, text_lengths, z, frame_lengths = collate(
                [cache.item(i) for i in pick_batch(order, cache, g, frames_per_batch, max_batch)])
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, steps, lr, warmup_steps)
            if config.features == "mel" and voice_warp_share > 0 and voice_warp > 0:
                warped = torch.rand(z.shape[0], generator=g) < voice_warp_share
                factors = torch.exp(voice_warp * (2.0 * torch.rand(z.shape[0], generator=g) - 1.0))
                z = warp_mel_frames(z, torch.where(warped, factors, torch.ones_like(factors)), config.mel_f_max_hz)
                if voice_eq > 0:
                    curve = voice_eq * (2.0 * torch.rand(z.shape[0], 3, generator=g) - 1.0) * warped[:, None]
                    z = tilt_mel_frames(z, curve) * sequence_mask(frame_lengths, z.shape[-1]).unsqueeze(1)
            losses = model.losses(symbols, text_lengths, model.normalize(z), frame_lengths, g)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
            optimizer.step()
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1.0 - ema_decay)
            step += 1
            window.append([float(losses.flow.detach()), float(losses.prior.detach()),
                           float(losses.duration.detach()), grad_norm])
            if step % log_every == 0:
                means = [sum(col) / len(window) for col in zip(*window)]
                line = {"step": step, "flow": round(means[0], 4), "prior": round(means[1], 4),
                        "duration": round(means[2], 4), "grad_norm": round(means[3], 3),
                        "lr": optimizer.param_groups[0]["lr"], "time": time.strftime("%H:%M:%S")}
                window = []
                with open(out_dir / "train_log.jsonl", "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(line) + "\n")
                if progress:
                    print(json.dumps(line), flush=True)
            # on a starved machine a time-based save alone would spend the little CPU there is on validation
            if step % checkpoint_every == 0 or (time.time() - last_save > checkpoint_s
                                                 and step - last_saved_step >= log_every):
                entry = save(step)
                last_save, last_saved_step = time.time(), step
    except KeyboardInterrupt:
        # the last periodic checkpoint stands; a half-finished step is never saved
        raise
    if not history or history[-1]["step"] != step:
        entry = save(step)
    return entry or history[-1]


__all__ = ["lr_at", "pick_batch", "step_generator", "train_tts", "validation_losses", "warm_start"]
