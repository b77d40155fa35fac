"""Training checkpoints of the codec in one ``.safetensors`` file (no pickle).

A checkpoint holds everything needed to continue a run bit for bit:

- tensors ``codec.*`` and ``disc.*``: the two modules' state dicts;
- tensors ``opt_g.<param index>.<name>`` / ``opt_d.*``: the optimisers'
  per-parameter state (Adam moments and step counts);
- tensor ``rng.generator``: the training generator's state (uint8);
- metadata (strings): ``step``, the codec config, the training settings, the
  optimisers' ``param_groups`` and the loss history, as JSON.

It is written atomically, so an interruption leaves the previous checkpoint.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..errors import SDSAudioError
from .io import codec_state_tensors, config_from_metadata, load_state_checked, read_codec_file

FORMAT_NAME = "sds-audio-codec-checkpoint"


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], str]:
    """Flatten ``optimizer.state_dict()`` into ``{prefix.idx.name: tensor}`` plus JSON ``param_groups``."""
    state = optimizer.state_dict()
    tensors = {}
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            if not torch.is_tensor(value):
                value = torch.tensor(value)
            tensors[f"{prefix}.{idx}.{name}"] = value.detach().cpu().contiguous().clone()
    return tensors, json.dumps(state["param_groups"])


def load_optimizer_tensors(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], prefix: str,
                           groups_json: str) -> None:
    """Inverse of :func:`optimizer_tensors`."""
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        _, idx, name = key.split(".", 2)
        per_param.setdefault(int(idx), {})[name] = value
    groups = json.loads(groups_json)
    optimizer.load_state_dict({"state": per_param, "param_groups": groups})


@dataclass
class TrainingState:
    """What a checkpoint restores besides the module weights."""

    step: int
    settings: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)


def save_checkpoint(path: str | os.PathLike, *, codec: torch.nn.Module, discriminator: torch.nn.Module,
                    opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, generator: torch.Generator,
                    state: TrainingState) -> Path:
    """Write a training checkpoint atomically."""
    tensors = {f"codec.{k}": v for k, v in codec_state_tensors(codec).items()}
    tensors.update({f"disc.{k}": v.detach().cpu().contiguous().clone()
                    for k, v in discriminator.state_dict().items()})
    g_tensors, g_groups = optimizer_tensors(opt_g, "opt_g")
    d_tensors, d_groups = optimizer_tensors(opt_d, "opt_d")
    tensors.update(g_tensors)
    tensors.update(d_tensors)
    tensors["rng.generator"] = generator.get_state().clone()
    metadata = {
        "format": FORMAT_NAME,
        "step": str(state.step),
        "config": codec.config.to_json(),
        "settings": json.dumps(state.settings, sort_keys=True),
        "opt_g_groups": g_groups,
        "opt_d_groups": d_groups,
        "history": json.dumps(state.history),
    }
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a checkpoint (SDSAudioError naming the file when broken)."""
    tensors, metadata = read_codec_file(path, what="codec checkpoint")
    if metadata.get("format") != FORMAT_NAME or "step" not in metadata:
        raise SDSAudioError(f"{path} is not a codec training checkpoint; delete it or pass resume=False")
    return tensors, metadata


def load_checkpoint(path: str | os.PathLike, *, codec: torch.nn.Module, discriminator: torch.nn.Module,
                    opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                    generator: torch.Generator) -> TrainingState:
    """Restore modules, optimisers and generator from ``path``; return the step, settings and history.

    Raises:
        SDSAudioError: the file is broken or was written for a different codec config.
    """
    tensors, metadata = read_checkpoint(path)
    saved_config = config_from_metadata(path, metadata)
    if saved_config != codec.config:
        raise SDSAudioError(f"checkpoint {path} was written for a different codec config; "
                            "use the same config, another output directory, or resume=False")
    try:
        load_state_checked(codec, {k[6:]: v for k, v in tensors.items() if k.startswith("codec.")}, path)
        load_state_checked(discriminator, {k[5:]: v for k, v in tensors.items() if k.startswith("disc.")}, path,
                           what="discriminator")
        load_optimizer_tensors(opt_g, tensors, "opt_g", metadata["opt_g_groups"])
        load_optimizer_tensors(opt_d, tensors, "opt_d", metadata["opt_d_groups"])
        generator.set_state(tensors["rng.generator"])
        return TrainingState(step=int(metadata["step"]), settings=json.loads(metadata["settings"]),
                             history=json.loads(metadata["history"]))
    except (KeyError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
        raise SDSAudioError(f"checkpoint {path} is incomplete or corrupt ({exc}); "
                            "delete it or pass resume=False") from exc
