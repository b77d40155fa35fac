"""Reading a captioned corpus: the manifest, the concept list, and a torch Dataset.

A corpus is a directory holding

- ``manifest.jsonl``: one JSON object per clip::

      {"id": str, "path": "audio/<id>.wav", "concept": str, "caption": str,
       "split": "train" | "heldout", "source": "soundfont" | "procedural",
       "duration_s": float, "sample_rate": 22050, "attributes": {...}}

- ``concepts.json``: ``[{"concept", "family", "prompt", "paraphrases"}, ...]``
- the audio files (16-bit PCM WAV, mono, 22050 Hz) at the relative paths.

:func:`sds_audio.corpus.build.build_corpus` writes such a directory; the codec,
flow and judge trainers read it through :class:`CorpusDataset`. Audio is read
with soundfile; a file at another rate is resampled with
``torchaudio.functional.resample`` and multi-channel files are averaged to mono.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio

from ..errors import SDSAudioError

MANIFEST_NAME = "manifest.jsonl"
CONCEPTS_NAME = "concepts.json"
SPLITS = ("train", "heldout")
REQUIRED_KEYS = ("id", "path", "concept", "caption", "split")


def read_manifest(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Read ``root/manifest.jsonl`` as a list of clip records (file order).

    Raises:
        SDSAudioError: the manifest is missing, a line is not JSON, a record lacks
            one of ``id, path, concept, caption, split``, a split is not
            ``"train"`` / ``"heldout"``, or an id repeats.
    """
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise SDSAudioError(f"{path} does not exist: point at a corpus directory "
                            "(build one with `sds-audio corpus build OUT_DIR`)")
    records: list[dict[str, Any]] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SDSAudioError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
            if not isinstance(rec, dict):
                raise SDSAudioError(f"{path}:{line_no}: expected a JSON object per line")
            missing = [k for k in REQUIRED_KEYS if k not in rec]
            if missing:
                raise SDSAudioError(f"{path}:{line_no}: record lacks {', '.join(missing)}")
            if rec["split"] not in SPLITS:
                raise SDSAudioError(f"{path}:{line_no}: split must be one of {SPLITS}, got {rec['split']!r}")
            if rec["id"] in seen:
                raise SDSAudioError(f"{path}:{line_no}: clip id {rec['id']!r} appears twice")
            seen.add(rec["id"])
            records.append(rec)
    return records


def read_concepts(root: str | os.PathLike) -> list[dict[str, Any]]:
    """Read ``root/concepts.json``: ``[{"concept", "family", "prompt", "paraphrases"}, ...]``.

    Raises:
        SDSAudioError: the file is missing, not JSON, or an entry lacks ``concept``.
    """
    path = Path(root) / CONCEPTS_NAME
    if not path.is_file():
        raise SDSAudioError(f"{path} does not exist: point at a corpus directory "
                            "(build one with `sds-audio corpus build OUT_DIR`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SDSAudioError(f"{path}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, list) or not all(isinstance(c, dict) and "concept" in c for c in data):
        raise SDSAudioError(f"{path}: expected a list of objects with a 'concept' key")
    return data


def crop_or_pad(audio: np.ndarray, n_samples: int, offset: int) -> np.ndarray:
    """Take ``audio[offset : offset + n_samples]`` of a 1-D array, zero-padding the tail.

    Args:
        audio: ``(T,)`` float32.
        n_samples: output length.
        offset: start sample (clipped to ``[0, max(T - n_samples, 0)]``).

    Returns:
        ``(n_samples,)`` float32.
    """
    offset = int(min(max(offset, 0), max(audio.shape[0] - n_samples, 0)))
    out = np.zeros(n_samples, dtype=np.float32)
    piece = audio[offset:offset + n_samples]
    out[:piece.shape[0]] = piece
    return out


class CorpusDataset(torch.utils.data.Dataset):
    """Clips of a corpus split as training examples.

    Each item is a dict::

        {"audio": (1, T) float32 in [-1, 1], "caption": str, "concept": str,
         "concept_index": int, "id": str}

    with ``T = round(segment_s * sample_rate)``: a clip longer than that is
    cropped, a shorter one zero-padded at the end.

    Args:
        root: corpus directory (see the module docstring).
        split: ``"train"``, ``"heldout"`` or ``"all"``.
        segment_s: output length in seconds; ``None`` returns whole clips
            (variable ``T``; batch them with your own collate function).
        sample_rate: output rate in Hz; files at another rate are resampled.
        crop: ``"random"`` (seeded random offset) or ``"start"`` (always the
            first ``segment_s``: keeps the onset of one-shot sounds).
        seed: seeds the crop offsets. The offset of item ``i`` is a function of
            ``(seed, epoch, i)`` only, so it is the same in any DataLoader
            worker and changes when :meth:`set_epoch` is called.
        preload: read all audio into memory (int16) at construction.

    ``concept_index`` is the position of the concept in ``concepts.json``
    (the same across splits); without a ``concepts.json`` it is the position
    in the sorted list of all concepts in the manifest.

    Raises:
        SDSAudioError: missing / broken manifest, an unknown split or crop
            mode, an empty split, or an unreadable audio file (when read).
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", segment_s: float | None = 2.0,
                 sample_rate: int = 22050, *, crop: str = "random", seed: int = 0, preload: bool = False):
        if split not in SPLITS + ("all",):
            raise SDSAudioError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
        if crop not in ("random", "start"):
            raise SDSAudioError(f"crop must be 'random' or 'start', got {crop!r}")
        if segment_s is not None and segment_s <= 0:
            raise SDSAudioError(f"segment_s must be positive, got {segment_s}")
        self.root = Path(root)
        self.split = split
        self.segment_s = segment_s
        self.sample_rate = int(sample_rate)
        self.crop = crop
        self.seed = int(seed)
        self.epoch = 0
        records = read_manifest(self.root)
        if (self.root / CONCEPTS_NAME).is_file():
            self.concepts = [c["concept"] for c in read_concepts(self.root)]
        else:
            self.concepts = sorted({r["concept"] for r in records})
        self.concept_to_index = {c: i for i, c in enumerate(self.concepts)}
        unknown = sorted({r["concept"] for r in records} - set(self.concept_to_index))
        if unknown:
            raise SDSAudioError(f"{self.root / MANIFEST_NAME}: concepts {unknown} are not in {CONCEPTS_NAME}")
        self.records = [r for r in records if split == "all" or r["split"] == split]
        if not self.records:
            raise SDSAudioError(f"corpus {self.root} has no clips in split {split!r}")
        self.n_samples = None if segment_s is None else int(round(segment_s * self.sample_rate))
        self._cache: list[np.ndarray] | None = None
        if preload:
            self._cache = [self._read_int16(i) for i in range(len(self.records))]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def captions(self) -> list[str]:
        """The caption of every clip in this split (dataset order)."""
        return [r["caption"] for r in self.records]

    def set_epoch(self, epoch: int) -> None:
        """Change the random crops (call once per epoch for fresh crops)."""
        self.epoch = int(epoch)

    def _read_int16(self, index: int) -> np.ndarray:
        """The clip as ``(T,)`` int16 at ``self.sample_rate`` (mono)."""
        audio = self.load(index)
        return np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)

    def load(self, index: int) -> np.ndarray:
        """The whole clip ``index`` as ``(T,)`` float32, mono, at ``self.sample_rate``."""
        if self._cache is not None:
            return self._cache[index].astype(np.float32) / 32767.0
        rec = self.records[index]
        path = self.root / rec["path"]
        try:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise SDSAudioError(f"cannot read corpus clip {path}: {exc}") from exc
        if data.shape[0] == 0:
            raise SDSAudioError(f"corpus clip {path} holds no samples")
        audio = data.mean(axis=1).astype(np.float32)
        if int(sr) != self.sample_rate:
            audio = torchaudio.functional.resample(torch.from_numpy(audio), int(sr), self.sample_rate).numpy()
        return audio

    def crop_offset(self, index: int, n_total: int) -> int:
        """Start sample of the crop for item ``index`` of a clip of ``n_total`` samples."""
        if self.n_samples is None or self.crop == "start" or n_total <= self.n_samples:
            return 0
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return int(rng.integers(0, n_total - self.n_samples + 1))

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        index = index % len(self)
        rec = self.records[index]
        audio = self.load(index)
        if self.n_samples is not None:
            audio = crop_or_pad(audio, self.n_samples, self.crop_offset(index, audio.shape[0]))
        return {
            "audio": torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).unsqueeze(0),
            "caption": rec["caption"],
            "concept": rec["concept"],
            "concept_index": self.concept_to_index[rec["concept"]],
            "id": rec["id"],
        }
