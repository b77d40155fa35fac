"""Fixtures for the codec tests: tiny configs and a tiny corpus written on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from sds_audio.codec import CodecConfig

SAMPLE_RATE = 22050


def make_tiny_config(**overrides) -> CodecConfig:
    """A codec of a few thousand parameters with hop 32 (patch 2 * strides 4, 4)."""
    kwargs = dict(patch_size=2, encoder_channels=4, decoder_channels=4, channel_mults=(1, 2, 4), strides=(4, 4),
                  dilations=(1, 3), latent_channels=4, n_codebooks=3, codebook_size=16)
    kwargs.update(overrides)
    return CodecConfig(**kwargs)


def write_tiny_corpus(root: Path, n_train: int = 6, n_heldout: int = 2, duration_s: float = 0.5) -> Path:
    """Sine tones and noise bursts as 16-bit mono WAVs with manifest.jsonl and concepts.json."""
    rng = np.random.default_rng(0)
    (root / "audio").mkdir(parents=True)
    t = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    records = []
    for i in range(n_train + n_heldout):
        if i % 2 == 0:
            concept = "sine"
            audio = 0.5 * np.sin(2 * np.pi * (220.0 * (1 + i)) * t) * np.exp(-3.0 * t)
        else:
            concept = "noise"
            audio = 0.3 * rng.standard_normal(t.shape) * np.exp(-8.0 * t)
        clip_id = f"clip{i:03d}"
        sf.write(str(root / "audio" / f"{clip_id}.wav"), audio.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        records.append({"id": clip_id, "path": f"audio/{clip_id}.wav", "concept": concept,
                        "caption": f"a {concept}", "split": "train" if i < n_train else "heldout",
                        "source": "procedural", "duration_s": duration_s, "sample_rate": SAMPLE_RATE,
                        "attributes": {}})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    concepts = [{"concept": c, "family": "test", "prompt": f"a {c}", "paraphrases": [f"some {c}"]}
                for c in ("sine", "noise")]
    (root / "concepts.json").write_text(json.dumps(concepts))
    return root


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    return write_tiny_corpus(tmp_path / "corpus")


@pytest.fixture
def tiny_config():
    """Factory: ``tiny_config(**overrides) -> CodecConfig``."""
    return make_tiny_config


