"""The corpus encoded once by the frozen codec: a latent set cached as ``.safetensors``.

Training the flow model never runs the codec: :func:`encode_corpus` reads
every clip of a split, keeps its first ``window_s`` seconds, zero-pads it to
``window_s`` (so the frames past the clip are the codec's own latents of
silence) and stores the posterior mean. :func:`load_or_encode` re-encodes only
when the codec weights, the manifest or the window changed (a fingerprint of
the three is stored in the file's metadata).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path
from ..corpus.dataset import MANIFEST_NAME, CorpusDataset, crop_or_pad
from ..errors import SDSAudioError


@dataclass
class LatentSet:
    """Codec latents of a corpus split.

    Attributes:
        latents: ``(n_clips, D, L_window)`` float16 codec latents (raw, not normalised).
        n_frames: ``(n_clips,)`` int64, latent frames covering the clip's sound
            (``ceil(min(duration, window) * sample_rate / hop)``).
        seconds: ``(n_clips,)`` float32, seconds of sound (``min(duration, window_s)``).
        captions: caption of each clip.
        concepts: concept of each clip.
        latent_rate: latent frames per second.
        window_s: the window the clips were padded / cut to.
    """

    latents: torch.Tensor
    n_frames: torch.Tensor
    seconds: torch.Tensor
    captions: list[str]
    concepts: list[str]
    latent_rate: float
    window_s: float

    def __len__(self) -> int:
        return self.latents.shape[0]

    @property
    def window_frames(self) -> int:
        return self.latents.shape[-1]

    def channel_stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel mean and std ``(D,)`` over the frames that hold sound."""
        frames = torch.arange(self.window_frames)
        valid = frames[None, :] < self.n_frames[:, None]  # (n, L)
        x = self.latents.float().permute(1, 0, 2)[:, valid]  # (D, n_valid)
        std = x.std(dim=1).clamp_min(1e-3)
        return x.mean(dim=1), std


def module_fingerprint(module: torch.nn.Module) -> str:
    """SHA-256 over a module's state dict (names, shapes, values rounded to float16).

    Rounding makes the fingerprint survive a float32 -> float16 conversion of
    the weights file (what shipping does).
    """
    digest = hashlib.sha256()
    for name, value in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(value.shape)).encode())
        digest.update(value.detach().cpu().contiguous().half().float().numpy().tobytes())
    return digest.hexdigest()


def latent_space_fingerprint(codec: torch.nn.Module) -> str:
    """SHA-256 of what defines a codec's latent space: the encoder side and the frame layout.

    The encoder (and bottleneck) weights, the sample rate, channel count, hop and
    latent width. The decoder is left out on purpose: a decoder fine-tuned on a
    frozen encoder (``sds-audio train codec --decoder-only``) keeps every flow model
    trained on the encoder's latents valid.
    """
    digest = hashlib.sha256()
    parts = [codec.encoder] + [m for m in (getattr(codec, "vae", None), getattr(codec, "quantizer", None))
                               if m is not None]
    for part in parts:
        digest.update(module_fingerprint(part).encode())
    layout = (int(codec.sample_rate), int(codec.channels), int(codec.hop_length), int(codec.latent_channels))
    digest.update(repr(layout).encode())
    return digest.hexdigest()


def corpus_fingerprint(corpus_dir: str | os.PathLike) -> str:
    """SHA-256 of the corpus manifest (clips are identified by it)."""
    path = Path(corpus_dir) / MANIFEST_NAME
    if not path.is_file():
        raise SDSAudioError(f"{path} does not exist: point --corpus at a corpus directory "
                            "(build one with `sds-audio corpus build OUT_DIR`)")
    return hashlib.sha256(path.read_bytes()).hexdigest()


@torch.no_grad()
def encode_corpus(corpus_dir: str | os.PathLike, codec: torch.nn.Module, split: str, window_s: float,
                  batch_size: int = 16, progress: bool = True) -> LatentSet:
    """Encode every clip of ``split`` (first ``window_s`` seconds, zero-padded to it).

    Args:
        codec: an :class:`sds_audio.codec.Codec` (``sample_rate``, ``hop_length``, ``encode``).
        split: ``"train"`` / ``"heldout"`` / ``"all"``.
        window_s: seconds per clip.
    """
    from tqdm.auto import tqdm

    dataset = CorpusDataset(corpus_dir, split=split, segment_s=None, sample_rate=codec.sample_rate)
    n_samples = int(round(window_s * codec.sample_rate))
    hop = codec.hop_length
    latents, n_frames, seconds = [], [], []
    codec = codec.eval()
    indices = list(range(len(dataset)))
    chunks = [indices[i:i + batch_size] for i in range(0, len(indices), batch_size)]
    for chunk in tqdm(chunks, desc=f"encoding {split} clips", disable=not progress, leave=False):
        audio = []
        for i in chunk:
            clip = dataset.load(i)
            n = min(clip.shape[0], n_samples)
            n_frames.append(-(-n // hop))
            seconds.append(n / codec.sample_rate)
            audio.append(crop_or_pad(clip, n_samples, 0))
        batch = torch.from_numpy(np.stack(audio)).unsqueeze(1)
        latents.append(codec.encode(batch).to(torch.float16))
    z = torch.cat(latents)
    if not torch.isfinite(z).all():
        raise SDSAudioError("the codec produced NaN / infinite latents for the corpus: check the codec weights",
                            exit_code=1)
    return LatentSet(z, torch.tensor(n_frames, dtype=torch.int64), torch.tensor(seconds, dtype=torch.float32),
                     [r["caption"] for r in dataset.records], [r["concept"] for r in dataset.records],
                     float(codec.sample_rate) / hop, float(window_s))


def save_latent_set(latent_set: LatentSet, path: str | os.PathLike, fingerprint: str) -> None:
    """Write a latent set atomically; ``fingerprint`` identifies what produced it."""
    tensors = {"latents": latent_set.latents.contiguous(), "n_frames": latent_set.n_frames,
               "seconds": latent_set.seconds}
    metadata = {"format": "sds-audio-latents", "fingerprint": fingerprint,
                "captions": json.dumps(latent_set.captions), "concepts": json.dumps(latent_set.concepts),
                "latent_rate": repr(latent_set.latent_rate), "window_s": repr(latent_set.window_s)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_latent_set(path: str | os.PathLike, fingerprint: str | None = None) -> LatentSet | None:
    """Read a cached latent set; None when absent, unreadable or made from other inputs."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        if meta.get("format") != "sds-audio-latents":
            return None
        if fingerprint is not None and meta.get("fingerprint") != fingerprint:
            return None
        tensors = load_file(str(path))
        return LatentSet(tensors["latents"], tensors["n_frames"], tensors["seconds"],
                         json.loads(meta["captions"]), json.loads(meta["concepts"]),
                         float(meta["latent_rate"]), float(meta["window_s"]))
    except (SafetensorError, OSError, KeyError, ValueError):
        return None


def load_or_encode(corpus_dir: str | os.PathLike, codec: torch.nn.Module, split: str, window_s: float,
                   cache_path: str | os.PathLike, progress: bool = True) -> LatentSet:
    """The cached latent set at ``cache_path`` if it matches (codec, manifest, window), else encode and cache."""
    fingerprint = hashlib.sha256(
        f"{latent_space_fingerprint(codec)}|{corpus_fingerprint(corpus_dir)}|{split}|{window_s!r}".encode()).hexdigest()
    cached = load_latent_set(cache_path, fingerprint)
    if cached is not None:
        return cached
    latent_set = encode_corpus(corpus_dir, codec, split, window_s, progress=progress)
    save_latent_set(latent_set, cache_path, fingerprint)
    return latent_set
