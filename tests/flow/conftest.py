"""Fixtures for the flow tests: tiny flow configs, a tiny real codec, a tiny corpus on disk, MiniLM."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from sds_audio.flow import FlowCondition, FlowConfig, FlowModel

TINY_FLOW = dict(latent_channels=8, latent_rate=22050 / 128, width=32, depth=2, heads=2, patch_size=2,
                 time_features=16, duration_features=8, max_duration_s=0.5)
TINY_CODEC = dict(patch_size=4, encoder_channels=4, decoder_channels=4, channel_mults=(1, 2, 2), strides=(4, 8),
                  dilations=(1,), latent_channels=8)
TEXT_DIM = 384


def randomize(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Overwrite every parameter with seeded noise (the zero-initialised gates would make v = 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return model


def tiny_flow(seed: int = 0, random_weights: bool = True, **overrides) -> FlowModel:
    torch.manual_seed(seed)
    model = FlowModel(FlowConfig(**{**TINY_FLOW, **overrides}))
    return randomize(model, seed) if random_weights else model


def random_condition(batch: int, n_tokens: int = 5, seconds: float = 0.4, seed: int = 0,
                     drop: bool = False) -> FlowCondition:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(batch, n_tokens, TEXT_DIM, generator=g)
    mask = torch.ones(batch, n_tokens, dtype=torch.bool)
    pooled = torch.nn.functional.normalize(torch.randn(batch, TEXT_DIM, generator=g), dim=-1)
    return FlowCondition.from_text(tokens, mask, pooled, seconds, drop)


def tiny_codec(seed: int = 0):
    from sds_audio.codec import Codec, CodecConfig

    torch.manual_seed(seed)
    return Codec(CodecConfig(**TINY_CODEC)).eval()


def write_tiny_corpus(root: Path, n_per_concept: int = 4, seed: int = 0) -> Path:
    """Two concepts (sine tones, noise bursts), 0.2-0.7 s clips, in the corpus format of the team brief."""
    rng = np.random.default_rng(seed)
    sr = 22050
    (root / "audio").mkdir(parents=True, exist_ok=True)
    concepts = [{"concept": "sine tone", "family": "tonal", "prompt": "a pure sine tone",
                 "paraphrases": ["a clean sinusoidal beep"]},
                {"concept": "noise burst", "family": "noise", "prompt": "a burst of white noise",
                 "paraphrases": ["a short hiss"]}]
    records = []
    for c in concepts:
        for i in range(n_per_concept + 1):
            duration = float(rng.uniform(0.2, 0.7))
            t = np.arange(int(duration * sr)) / sr
            env = np.exp(-t / (0.3 * duration))
            if c["concept"] == "sine tone":
                f0 = float(rng.uniform(200, 800))
                audio = 0.5 * np.sin(2 * np.pi * f0 * t) * env
                caption = f"a pure sine tone at {f0:.0f} Hz"
            else:
                audio = 0.3 * rng.standard_normal(t.shape[0]) * env
                caption = "a short burst of white noise"
            clip_id = f"{c['concept'].replace(' ', '_')}_{i}"
            sf.write(root / "audio" / f"{clip_id}.wav", audio.astype(np.float32), sr, subtype="PCM_16")
            records.append({"id": clip_id, "path": f"audio/{clip_id}.wav", "concept": c["concept"],
                            "caption": caption, "split": "heldout" if i == n_per_concept else "train",
                            "source": "procedural", "duration_s": duration, "sample_rate": sr, "attributes": {}})
    (root / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "concepts.json").write_text(json.dumps(concepts))
    return root


@pytest.fixture(scope="session")
def text_encoder():
    from sds_audio.text import TextEncoder

    return TextEncoder()


@pytest.fixture(scope="session")
def tiny_corpus_dir(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("flow_corpus"))


@pytest.fixture(scope="session")
def make_flow():
    """``make_flow(seed=0, random_weights=True, **config_overrides) -> FlowModel`` (tiny)."""
    return tiny_flow


@pytest.fixture(scope="session")
def make_condition():
    """``make_condition(batch, n_tokens=5, seconds=0.4, seed=0, drop=False) -> FlowCondition``."""
    return random_condition


@pytest.fixture(scope="session")
def make_codec():
    """``make_codec(seed=0) -> Codec`` with a tiny real config (hop 128, 8 latent channels)."""
    return tiny_codec
