"""Writes tiny corpora in the layout ``sds-audio corpus build`` makes: ``audio/*.wav`` (16-bit mono),
``manifest.jsonl`` (one record per clip) and ``concepts.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import soundfile as sf


def write_corpus(root: Path, clips: Iterable[tuple[str, str, str, str, np.ndarray]], concepts: list[dict],
                 sample_rate: int) -> Path:
    """``clips``: ``(clip_id, concept, caption, split, audio)`` each; returns ``root``."""
    (root / "audio").mkdir(parents=True, exist_ok=True)
    records = []
    for clip_id, concept, caption, split, audio in clips:
        sf.write(str(root / "audio" / f"{clip_id}.wav"), np.asarray(audio, dtype=np.float32), sample_rate,
                 subtype="PCM_16")
        records.append({"id": clip_id, "path": f"audio/{clip_id}.wav", "concept": concept, "caption": caption,
                        "split": split, "source": "procedural", "duration_s": len(audio) / sample_rate,
                        "sample_rate": sample_rate, "attributes": {}})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "concepts.json").write_text(json.dumps(concepts))
    return root
