"""Checkpoint files of the optimisation tasks (prompt -> preset, separation).

A checkpoint is a dict of tensors, numbers, strings and lists written with
``torch.save`` (atomically) and read back with ``weights_only=True``, so
loading one never runs pickled code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..atomic import atomic_path
from ..errors import SDSAudioError


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors land on the CPU)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is a user-facing error
        text = str(exc).strip()
        reason = text.splitlines()[0][:160] if text else type(exc).__name__   # torch's own text runs for lines
        raise SDSAudioError(f"cannot resume from {path}: the checkpoint is unreadable or not a plain checkpoint "
                            f"({reason}); start the run again with --overwrite") from exc
