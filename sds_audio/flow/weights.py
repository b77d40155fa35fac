"""Saving and loading a :class:`~sds_audio.flow.dit.FlowModel` as ``.safetensors``.

The file holds the state dict (float16 by default: half the size, and the
float32 master weights are not needed for inference) and, in the safetensors
metadata, ``{"format": "sds-audio-flow", "config": FlowConfig JSON, ...}``.
Loading rebuilds the module from that config, so a file is self-describing.
Nothing is unpickled.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_path
from ..errors import SDSAudioError
from .anchor import PromptAnchor
from .config import FlowConfig
from .dit import FlowModel

FORMAT = "sds-audio-flow"
TRAIN_HINT = "train it with `sds-audio train flow --corpus CORPUS_DIR --out OUT_DIR --codec CODEC.safetensors`"


def save_flow(model: FlowModel, path: str | os.PathLike, dtype: torch.dtype = torch.float16,
              extra_metadata: dict[str, str] | None = None) -> None:
    """Write ``model`` to ``path`` atomically (weights cast to ``dtype``; buffers kept in float32).

    Args:
        extra_metadata: more string entries for the metadata (e.g. training provenance).
    """
    buffers = {name for name, _ in model.named_buffers()}
    state = {}
    for name, value in model.state_dict().items():
        value = value.detach().cpu()
        if value.is_floating_point() and name not in buffers:
            value = value.to(dtype)
        state[name] = value.contiguous()
    metadata = {"format": FORMAT, "config": model.config.to_json()}
    if model.anchor is not None:
        metadata["anchor_captions"] = json.dumps(model.anchor.captions)
    for key, value in (extra_metadata or {}).items():
        metadata[str(key)] = str(value)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def read_flow_config(path: str | os.PathLike) -> FlowConfig:
    """The :class:`FlowConfig` stored in a flow file's metadata (no weights read)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise SDSAudioError(f"flow weights {path} do not exist: {TRAIN_HINT}", exit_code=1)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise SDSAudioError(f"flow weights {path} are not a readable .safetensors file ({exc}): "
                            f"{TRAIN_HINT}", exit_code=1) from exc
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise SDSAudioError(f"{path} is not an sds-audio flow model (no flow config in its metadata): "
                            f"{TRAIN_HINT}", exit_code=1)
    try:
        return FlowConfig.from_json(metadata["config"])
    except SDSAudioError as exc:
        raise SDSAudioError(f"{path}: {exc}", exit_code=1) from exc


def load_flow(path: str | os.PathLike, device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float32) -> FlowModel:
    """Rebuild a frozen (``eval``, no grad) :class:`FlowModel` from ``path``.

    Raises:
        SDSAudioError: the file is missing, not safetensors, not a flow model,
            or its tensors do not match its config; the message names the file
            and the command that trains it.
    """
    path = Path(path)
    config = read_flow_config(path)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise SDSAudioError(f"flow weights {path} are broken ({exc}): {TRAIN_HINT}", exit_code=1) from exc
    model = FlowModel(config)
    if any(k.startswith("anchor.") for k in state):
        try:
            captions = flow_metadata(path).get("anchor_captions")
            if not isinstance(captions, list):
                raise SDSAudioError("its prompt anchor's captions are missing from the metadata")
            model.anchor = PromptAnchor.shapes_from_state(state, captions)
        except SDSAudioError as exc:
            raise SDSAudioError(f"flow weights {path}: {exc}: {TRAIN_HINT}", exit_code=1) from exc
    load_state_checked(model, state, f"flow weights {path}", TRAIN_HINT)
    return model.to(device=device, dtype=dtype).eval().requires_grad_(False)


def load_state_checked(model: torch.nn.Module, state: dict[str, torch.Tensor], what: str, hint: str) -> None:
    """``model.load_state_dict(state, strict=True)``, refusing mismatched or non-finite weights.

    Raises:
        SDSAudioError (exit status 1): ``"{what} do not match their config ..."`` or ``"{what} hold NaN or
            infinite values ..."``, each followed by ``hint``.
    """
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise SDSAudioError(f"{what} do not match their config ({first}): {hint}", exit_code=1) from exc
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise SDSAudioError(f"{what} hold NaN or infinite values (in {bad[0]}): {hint}", exit_code=1)


def flow_metadata(path: str | os.PathLike) -> dict[str, object]:
    """All metadata of a flow file, with JSON values decoded where they parse."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        raw = fh.metadata() or {}
    out: dict[str, object] = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out
