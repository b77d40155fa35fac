"""Saving and loading codec weights: ``.safetensors`` with the config as JSON metadata.

File layout: the codec's ``state_dict`` (weight-norm parametrisations, Snake
alphas, codebook buffers) as tensors; metadata ``{"format": "sds-audio-codec",
"version": "1", "config": <CodecConfig JSON>}``. Floating-point weights may be
stored as float16 for shipping; loading always returns a float32 module.

Every way a file can be wrong (missing, truncated, not safetensors, no or bad
config, missing / extra / wrongly shaped tensors, NaN weights) raises
:class:`~sds_audio.errors.SDSAudioError` naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..atomic import atomic_path
from ..errors import SDSAudioError
from .config import CodecConfig
from .model import Codec

FORMAT_NAME = "sds-audio-codec"
FORMAT_VERSION = "1"


def default_codec_path() -> Path:
    """Where the shipped codec weights live: ``sds_audio/assets/codec.safetensors``."""
    return Path(__file__).resolve().parent.parent / "assets" / "codec.safetensors"


def codec_state_tensors(codec: Codec, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The codec's state as contiguous CPU tensors (floating ones cast to ``dtype`` when given)."""
    out = {}
    for key, value in codec.state_dict().items():
        value = value.detach().cpu()
        if dtype is not None and value.is_floating_point():
            value = value.to(dtype)
        out[key] = value.contiguous().clone()
    return out


def save_codec(codec: Codec, path: str | os.PathLike, dtype: torch.dtype = torch.float32) -> Path:
    """Write ``codec`` to ``path`` (atomically).

    Args:
        dtype: storage type of the floating-point weights (``torch.float16``
            halves the file for shipping; loading casts back to float32).
    """
    if dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise SDSAudioError(f"codec weights can be stored as float32, float16 or bfloat16, not {dtype}")
    path = Path(path)
    metadata = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "config": codec.config.to_json()}
    with atomic_path(path) as tmp:
        save_file(codec_state_tensors(codec, dtype), str(tmp), metadata=metadata)
    return path


def read_codec_file(path: str | os.PathLike, what: str = "codec weights"
                    ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Read all tensors and the metadata of a safetensors file; any failure is an SDSAudioError naming it."""
    path = Path(path)
    if not path.is_file():
        raise SDSAudioError(f"{what} file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = dict(fh.metadata() or {})
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SDSAudioError(f"{what} file {path} is not a readable .safetensors file ({exc}); "
                            "it may be truncated or corrupt: re-download or re-train it") from exc
    return tensors, metadata


def config_from_metadata(path: str | os.PathLike, metadata: dict[str, str], key: str = "config") -> CodecConfig:
    """Parse the codec config stored under ``key`` in a file's metadata (SDSAudioError naming the file)."""
    if key not in metadata:
        raise SDSAudioError(f"{path} holds no codec config in its metadata: not a codec file written by "
                            "sds-audio (save it with sds_audio.codec.save_codec)")
    try:
        return CodecConfig.from_json(metadata[key])
    except SDSAudioError as exc:
        raise SDSAudioError(f"{path}: {exc}") from exc


def load_state_checked(module: torch.nn.Module, tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                       what: str = "codec") -> None:
    """Load ``tensors`` into ``module`` after checking keys, shapes and finiteness (SDSAudioError naming ``path``)."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise SDSAudioError(f"{path} does not match the {what} its config describes: tensors "
                            f"{' and '.join(parts)}")
    for key, ref in expected.items():
        value = tensors[key]
        if tuple(value.shape) != tuple(ref.shape):
            raise SDSAudioError(f"{path} does not match the {what} its config describes: {key} has shape "
                                f"{tuple(value.shape)}, expected {tuple(ref.shape)}")
        if value.is_floating_point() and not torch.isfinite(value).all():
            raise SDSAudioError(f"{path}: tensor {key} holds NaN or infinite values; the weights are broken")
        if value.is_floating_point() != ref.is_floating_point():
            raise SDSAudioError(f"{path}: tensor {key} has dtype {value.dtype}, expected {ref.dtype}")
    module.load_state_dict({k: v.to(expected[k].dtype) for k, v in tensors.items()})


def load_codec(path: str | os.PathLike | None = None, device: str | torch.device = "cpu") -> Codec:
    """Read a codec written by :func:`save_codec` (float32, ``eval()`` mode, on ``device``).

    Args:
        path: the ``.safetensors`` file; ``None`` loads the shipped weights
            (:func:`default_codec_path`).

    Raises:
        SDSAudioError: the file is missing, unreadable, not a codec file, or its
            tensors do not fit its config.
    """
    path = Path(path) if path is not None else default_codec_path()
    try:
        tensors, metadata = read_codec_file(path)
        fmt = metadata.get("format")
        if fmt is not None and fmt != FORMAT_NAME:
            raise SDSAudioError(f"{path} is a {fmt!r} file, not codec weights ({FORMAT_NAME!r})")
        config = config_from_metadata(path, metadata)
        codec = Codec(config)
        load_state_checked(codec, tensors, path)
    except SDSAudioError as exc:   # missing or broken weights: exit status 1, as for the flow model's
        raise SDSAudioError(str(exc), exit_code=1) from exc
    return codec.to(device).eval()
