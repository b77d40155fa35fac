"""A tiny random speech model written to disk, for tests of the API around the model (not its quality)."""

from __future__ import annotations

from pathlib import Path

import torch

from sds_audio.tts import TTSConfig, TTSModel
from sds_audio.tts.weights import save_tts_model


def write_tiny_tts(path: Path, config: TTSConfig, prompt_frames: int = 20, seed: int = 0) -> Path:
    """Seeded random weights of ``config`` with a random built-in voice of ``prompt_frames`` frames at ``path``."""
    torch.manual_seed(seed)
    model = TTSModel(config)
    model.set_default_prompt(torch.randn(config.latent_channels, prompt_frames))
    save_tts_model(model, path)
    return path
