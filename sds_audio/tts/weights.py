"""Saving and loading a :class:`~sds_audio.tts.model.TTSModel` as ``.safetensors`` (no pickle).

The file holds the state dict (float16 weights by default; buffers kept in
float32) and, in the metadata, ``{"format": "sds-audio-tts", "config": TTSConfig
JSON, ...}``. An optional speech decoder for the codec latents (a codec whose
decoder was fine-tuned on speech, :mod:`sds_audio.tts.vocoder`) is a separate file.
Every way a file can be wrong (missing, truncated, not safetensors, not a TTS
model, tensors that do not fit the config, NaN) raises
:class:`~sds_audio.errors.SDSAudioError` with exit code 1.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path
from ..errors import SDSAudioError
from ..flow.weights import load_state_checked
from .config import TTSConfig
from .model import TTSModel

FORMAT = "sds-audio-tts"
TRAIN_HINT = "train one with `sds-audio train tts --data DIR --out RUN` or reinstall the package"


def default_tts_path() -> Path:
    """The shipped weights: ``sds_audio/assets/tts.safetensors``."""
    return Path(__file__).resolve().parent.parent / "assets" / "tts.safetensors"


def save_tts_model(model: TTSModel, path: str | os.PathLike, dtype: torch.dtype = torch.float16,
                   extra_metadata: dict[str, str] | None = None) -> None:
    """Write ``model`` to ``path`` atomically (parameters cast to ``dtype``, buffers float32)."""
    buffers = {name for name, _ in model.named_buffers()}
    state = {}
    for name, value in model.state_dict().items():
        value = value.detach().cpu()
        if value.is_floating_point() and name not in buffers:
            value = value.to(dtype)
        state[name] = value.contiguous()
    metadata = {"format": FORMAT, "config": model.config.to_json()}
    metadata.update({str(k): str(v) for k, v in (extra_metadata or {}).items()})
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def tts_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a TTS weights file (checked: it exists and is a TTS model)."""
    path = Path(path)
    if not path.is_file():
        raise SDSAudioError(f"tts weights {path} do not exist: {TRAIN_HINT}", exit_code=1)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise SDSAudioError(f"tts weights {path} are not a readable .safetensors file ({exc}): {TRAIN_HINT}",
                            exit_code=1) from exc
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise SDSAudioError(f"{path} is not an sds-audio tts model (no tts config in its metadata): {TRAIN_HINT}",
                            exit_code=1)
    return metadata


def load_tts_model(path: str | os.PathLike | None = None, device: torch.device | str | None = None) -> TTSModel:
    """Rebuild a frozen (``eval``, no grad, float32) :class:`TTSModel` from ``path`` (default: shipped weights)."""
    path = Path(path) if path is not None else default_tts_path()
    metadata = tts_metadata(path)
    try:
        config = TTSConfig.from_json(metadata["config"])
    except SDSAudioError as exc:
        raise SDSAudioError(f"{path}: {exc}", exit_code=1) from exc
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SDSAudioError(f"tts weights {path} are broken ({exc}): {TRAIN_HINT}", exit_code=1) from exc
    model = TTSModel(config)
    load_state_checked(model, state, f"tts weights {path}", TRAIN_HINT)
    return model.float().to(device).eval().requires_grad_(False)


__all__ = ["FORMAT", "default_tts_path", "load_tts_model", "save_tts_model", "tts_metadata"]
