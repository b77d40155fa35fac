"""Speech data: reading an LJSpeech-layout directory and caching its frames and symbol ids.

Accepted layout (LJSpeech's, plus two optional files :mod:`sds_audio.corpus.speech` writes)::

    DIR/metadata.csv    id|text[|normalized_text]    ('|' separated, no header; the last column is read)
    DIR/wavs/<id>.wav   any rate / channel count libsndfile reads (resampled to the model's rate, mono)
    DIR/speakers.csv    id|speaker|split             (optional; split: train, valid or test)

Without ``speakers.csv`` every utterance has speaker ``"default"`` and about 2 % of
them (those whose SHA-256 of the id ends in a byte below 5) form the validation split.

:func:`build_cache` encodes every utterance once with the model's frame space
(:mod:`sds_audio.tts.features`: the frozen codec's posterior mean, or log-mel
frames) and the front end, and writes one ``.safetensors`` file (no pickle):
tensors ``latents`` ``(D, total_frames)`` float16, ``frame_offsets``,
``symbols``, ``symbol_offsets``, ``speaker`` (index per utterance); metadata:
the ids, speakers, splits, symbol set and the features' fingerprint. A cache whose
metadata do not match the request is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tqdm.auto import tqdm

from ..atomic import atomic_path
from ..audio_io import load_audio
from ..errors import SDSAudioError
from .frontend import Frontend, UnknownSymbolWarning

SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Utterance:
    """One line of ``metadata.csv`` with its speaker and split."""

    id: str
    text: str
    speaker: str
    split: str
    wav: Path


def read_ljspeech(root: str | os.PathLike) -> list[Utterance]:
    """The utterances of an LJSpeech-layout directory (see the module docstring).

    Raises:
        SDSAudioError: no ``metadata.csv``, a malformed line, a repeated id, a bad split, or no utterance.
    """
    root = Path(root)
    meta = root / "metadata.csv"
    if not meta.is_file():
        raise SDSAudioError(f"{meta} does not exist: give an LJSpeech-layout directory (metadata.csv + wavs/), "
                            "e.g. one made by `sds-audio corpus speech OUT_DIR`")
    speakers: dict[str, tuple[str, str]] = {}
    spk_file = root / "speakers.csv"
    if spk_file.is_file():
        for n, line in enumerate(spk_file.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("|")
            if len(parts) != 3 or parts[2] not in SPLITS:
                raise SDSAudioError(f"{spk_file}:{n}: expected id|speaker|split with split in {SPLITS}")
            speakers[parts[0]] = (parts[1], parts[2])
    out, seen = [], set()
    for n, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("|")
        if len(parts) < 2 or not parts[0]:
            raise SDSAudioError(f"{meta}:{n}: expected id|text|normalized_text")
        uid, text = parts[0], parts[-1].strip() or parts[1].strip()
        if uid in seen:
            raise SDSAudioError(f"{meta}:{n}: id {uid!r} appears twice")
        seen.add(uid)
        if uid in speakers:
            speaker, split = speakers[uid]
        else:
            speaker = "default"
            split = "valid" if hashlib.sha256(uid.encode()).digest()[-1] < 5 else "train"
        out.append(Utterance(uid, text, speaker, split, root / "wavs" / f"{uid}.wav"))
    if not out:
        raise SDSAudioError(f"{meta} lists no utterance")
    return out


@dataclass
class SpeechCache:
    """The cached corpus in memory (see the module docstring)."""

    latents: torch.Tensor          # (D, total_frames) float16 frames (codec latents or log-mel)
    frame_offsets: torch.Tensor    # (U + 1,) int64
    symbols: torch.Tensor          # (total_symbols,) int64
    symbol_offsets: torch.Tensor   # (U + 1,) int64
    speaker: torch.Tensor          # (U,) int64
    ids: list[str]
    speakers: list[str]
    splits: list[str]

    def __len__(self) -> int:
        return len(self.ids)

    def frames(self, i: int) -> int:
        return int(self.frame_offsets[i + 1] - self.frame_offsets[i])

    def n_symbols(self, i: int) -> int:
        return int(self.symbol_offsets[i + 1] - self.symbol_offsets[i])

    def item(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(symbols (N,), latents (D, T) float32)`` of utterance ``i``."""
        s0, s1 = int(self.symbol_offsets[i]), int(self.symbol_offsets[i + 1])
        f0, f1 = int(self.frame_offsets[i]), int(self.frame_offsets[i + 1])
        return self.symbols[s0:s1], self.latents[:, f0:f1].float()

    def indices(self, split: str, max_frames: int | None = None) -> list[int]:
        """Utterances of ``split`` with at least as many frames as symbols (and at most ``max_frames``)."""
        return [i for i in range(len(self)) if self.splits[i] == split and self.frames(i) > self.n_symbols(i)
                and (max_frames is None or self.frames(i) <= max_frames)]


def _read_cache(path: Path, expect: dict[str, str]) -> SpeechCache | None:
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if any(meta.get(k) != v for k, v in expect.items()):
                return None
            t = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception:   # a broken cache is rebuilt
        return None
    return SpeechCache(t["latents"], t["frame_offsets"], t["symbols"], t["symbol_offsets"], t["speaker"],
                       json.loads(meta["ids"]), json.loads(meta["speaker_names"]), json.loads(meta["splits"]))


@torch.no_grad()
def build_cache(data_dir: str | os.PathLike, cache_path: str | os.PathLike, features: torch.nn.Module,
                frontend: Frontend, progress: bool = True, limit: int | None = None) -> SpeechCache:
    """Encode ``data_dir`` (or reuse ``cache_path`` when it matches) and return the cache.

    Args:
        features: the frame space (:class:`~sds_audio.tts.features.MelFeatures` or
            :class:`~sds_audio.tts.features.CodecFeatures`; its rate is the model's).
        frontend: the symbol set to encode the text with.
        limit: use only the first ``limit`` utterances (small runs and tests).
    """
    utterances = read_ljspeech(data_dir)[:limit]
    listing = hashlib.sha256("\n".join(f"{u.id}|{u.text}|{u.speaker}|{u.split}" for u in utterances).encode())
    expect = {"format": "sds-audio-tts-cache", "codec": features.fingerprint(), "symbols": frontend.symbols,
              "language": frontend.language, "listing": listing.hexdigest()[:16]}
    cache_path = Path(cache_path)
    if cache_path.is_file():
        cached = _read_cache(cache_path, expect)
        if cached is not None:
            return cached
    missing = [u.wav for u in utterances if not u.wav.is_file()]
    if missing:
        raise SDSAudioError(f"{len(missing)} wav files listed in metadata.csv are missing, e.g. {missing[0]}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnknownSymbolWarning)
        symbol_rows = frontend.encode_batch([u.text for u in utterances])
    if caught:
        warnings.warn(f"{len(caught)} texts had symbols outside the {frontend.symbols} set (dropped); first: "
                      f"{caught[0].message}", UnknownSymbolWarning, stacklevel=2)
    names = sorted({u.speaker for u in utterances})
    latents, frames = [], []
    for u in tqdm(utterances, desc="encoding speech", disable=not progress):
        audio, _ = load_audio(u.wav, sample_rate=features.sample_rate, channels=1)
        z = features.encode(audio)[0]
        latents.append(z.half())
        frames.append(z.shape[-1])
    tensors = {
        "latents": torch.cat(latents, dim=-1).contiguous(),
        "frame_offsets": torch.tensor([0] + frames).cumsum(0),
        "symbols": torch.tensor([s for row in symbol_rows for s in row], dtype=torch.long),
        "symbol_offsets": torch.tensor([0] + [len(r) for r in symbol_rows]).cumsum(0),
        "speaker": torch.tensor([names.index(u.speaker) for u in utterances]),
    }
    meta = dict(expect, ids=json.dumps([u.id for u in utterances]), speaker_names=json.dumps(names),
                splits=json.dumps([u.split for u in utterances]))
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(cache_path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return SpeechCache(tensors["latents"], tensors["frame_offsets"], tensors["symbols"], tensors["symbol_offsets"],
                       tensors["speaker"], [u.id for u in utterances], names, [u.split for u in utterances])


def collate(items: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, ...]:
    """Pad ``(symbols, latents)`` pairs into ``symbols (B, N)``, ``text_lengths``, ``z (B, D, T)``, ``frame_lengths``."""
    text_lengths = torch.tensor([len(s) for s, _ in items])
    frame_lengths = torch.tensor([z.shape[-1] for _, z in items])
    symbols = torch.zeros(len(items), int(text_lengths.max()), dtype=torch.long)
    z = torch.zeros(len(items), items[0][1].shape[0], int(frame_lengths.max()))
    for i, (s, lat) in enumerate(items):
        symbols[i, :len(s)] = s
        z[i, :, :lat.shape[-1]] = lat
    return symbols, text_lengths, z, frame_lengths


__all__ = ["SPLITS", "SpeechCache", "Utterance", "build_cache", "collate", "read_ljspeech"]
