"""Reading and writing audio files (soundfile), with resampling and checks.

Audio in the library is a float32 tensor ``(batch, channels, samples)``; this
module converts between that and files. Reading validates what a user can get
wrong (unreadable or empty file, NaN, all-silent, clipped) and converts the
sample rate (``torchaudio.functional.resample``) and channel count on request.
Writing is atomic (see :mod:`sds_audio.atomic`) and 24-bit PCM WAV by default.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .atomic import atomic_path
from .errors import SDSAudioError


def resample(audio: torch.Tensor, orig_hz: int, new_hz: int) -> torch.Tensor:
    """Differentiable band-limited resampling along the last axis (identity when rates match)."""
    if int(orig_hz) == int(new_hz):
        return audio
    return torchaudio.functional.resample(audio, int(orig_hz), int(new_hz))


def match_channels(audio: torch.Tensor, channels: int) -> torch.Tensor:
    """``(B, C, T)`` -> ``(B, channels, T)``: mono is duplicated, stereo is averaged to mono."""
    have = audio.shape[1]
    if have == channels:
        return audio
    if have == 1:
        return audio.expand(-1, channels, -1)
    if channels == 1:
        return audio.mean(dim=1, keepdim=True)
    raise SDSAudioError(f"cannot convert {have} channels to {channels}")


def load_audio(path: str | os.PathLike, sample_rate: int | None = None, channels: int | None = None,
               allow_silent: bool = False) -> tuple[torch.Tensor, int]:
    """Read a file as ``(1, C, T)`` float32.

    Args:
        path: any format libsndfile reads (WAV, FLAC, OGG, ...).
        sample_rate: resample to this rate when given.
        channels: convert to this channel count when given.
        allow_silent: accept an all-zero file.

    Returns:
        ``(audio, sample_rate)``.

    Raises:
        SDSAudioError: unreadable, empty, NaN/inf, or (unless allowed) silent audio.
    """
    path = Path(path)
    if not path.is_file():
        raise SDSAudioError(f"audio file {path} does not exist")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise SDSAudioError(f"cannot read audio file {path}: {exc}") from exc
    if data.shape[0] == 0:
        raise SDSAudioError(f"audio file {path} holds no samples")
    if not np.isfinite(data).all():
        raise SDSAudioError(f"audio file {path} holds NaN or infinite samples")
    peak = float(np.abs(data).max())
    if peak == 0.0 and not allow_silent:
        raise SDSAudioError(f"audio file {path} is all silence")
    if peak >= 0.999:
        clipped = float((np.abs(data) >= 0.999).mean())
        if clipped > 1e-3:
            warnings.warn(f"{path}: {clipped:.1%} of samples are at full scale (clipped audio)", stacklevel=2)
    audio = torch.from_numpy(np.ascontiguousarray(data.T)).unsqueeze(0)
    if sample_rate is not None and sample_rate != sr:
        audio = resample(audio, sr, sample_rate)
        sr = sample_rate
    if channels is not None:
        audio = match_channels(audio, channels)
    return audio.contiguous(), int(sr)


def save_audio(path: str | os.PathLike, audio: torch.Tensor, sample_rate: int, subtype: str = "PCM_24") -> Path:
    """Write ``(C, T)`` or ``(1, C, T)`` audio atomically; samples are clipped to [-1, 1].

    Raises:
        SDSAudioError: NaN audio, a batch of more than one, or an unwritable path.
    """
    audio = audio.detach().float().cpu()
    if audio.dim() == 3:
        if audio.shape[0] != 1:
            raise SDSAudioError(f"save_audio writes one signal; got a batch of {audio.shape[0]}")
        audio = audio[0]
    if audio.dim() == 1:
        audio = audio.unsqueeze(0)
    if not torch.isfinite(audio).all():
        raise SDSAudioError(f"refusing to write {path}: audio holds NaN or infinite samples")
    path = Path(path)
    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio.clamp(-1, 1).T.numpy(), int(sample_rate), subtype=subtype, format="WAV")
    return path
