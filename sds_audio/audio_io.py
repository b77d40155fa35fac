"""Reading and writing audio files (soundfile), with resampling and checks.

Audio in the library is a float32 tensor ``(batch, channels, samples)``; this
module converts between that and files. Reading validates what a user can get
wrong (a missing file, a directory, an unreadable or empty file, NaN,
all-silent, clipped) and converts the sample rate
(``torchaudio.functional.resample``) and channel count on request;
:func:`probe_audio` reads only the header, so that a command can check length
and channels before it loads anything. Writing is atomic (see
:mod:`sds_audio.atomic`); the format follows the file's extension
(:data:`OUTPUT_FORMATS`: 24-bit WAV and FLAC, Ogg Vorbis, and MP3 where the
installed libsndfile has it); any other extension is refused.

Clipping is measured one way everywhere (:func:`clipped_fraction`): the share of
samples, over all channels, at or above :data:`FULL_SCALE` in magnitude (a
16-bit file's positive full scale is ``32767 / 32768``, below 1).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from .atomic import atomic_path
from .errors import SDSAudioError

#: extension -> (libsndfile format, subtype); MP3 needs libsndfile >= 1.1
OUTPUT_FORMATS: dict[str, tuple[str, str]] = {
    ".wav": ("WAV", "PCM_24"), ".flac": ("FLAC", "PCM_24"), ".ogg": ("OGG", "VORBIS"),
    ".mp3": ("MP3", "MPEG_LAYER_III"),
}
#: magnitude from which a sample counts as clipped
FULL_SCALE = 0.999
#: share of clipped samples above which reading warns
CLIP_WARN_FRACTION = 1e-3


def clipped_fraction(audio: np.ndarray | torch.Tensor) -> float:
    """Share of samples (any layout, all channels) with ``|x| >= FULL_SCALE``."""
    if torch.is_tensor(audio):
        return float((audio.detach().abs() >= FULL_SCALE).float().mean()) if audio.numel() else 0.0
    return float((np.abs(audio) >= FULL_SCALE).mean()) if np.size(audio) else 0.0


def output_format(path: str | os.PathLike) -> tuple[str, str]:
    """``(format, default subtype)`` for an output path, chosen by its extension.

    Raises:
        SDSAudioError: an extension not in :data:`OUTPUT_FORMATS`, or one this libsndfile cannot write.
    """
    suffix = Path(path).suffix.lower()
    names = ", ".join(OUTPUT_FORMATS)
    if suffix not in OUTPUT_FORMATS:
        raise SDSAudioError(f"cannot write {path}: choose an output name ending in one of {names}")
    fmt, subtype = OUTPUT_FORMATS[suffix]
    if fmt not in sf.available_formats():
        raise SDSAudioError(f"cannot write {path}: the installed libsndfile ({sf.__libsndfile_version__}) has no "
                            f"{fmt} support; write .wav or .flac instead")
    return fmt, subtype


def check_audio_path(path: str | os.PathLike, what: str = "audio file") -> Path:
    """``path`` as a Path if it is an existing file; SDSAudioError saying what it is otherwise."""
    path = Path(path)
    if path.is_dir():
        raise SDSAudioError(f"{what} {path} is a directory; give an audio file")
    if not path.exists():
        raise SDSAudioError(f"{what} {path} does not exist")
    if not path.is_file():
        raise SDSAudioError(f"{what} {path} is not a regular file; give an audio file")
    return path


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says: ``frames`` per channel, ``sample_rate`` (Hz), ``channels``."""

    frames: int
    sample_rate: int
    channels: int

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def probe_audio(path: str | os.PathLike, what: str = "audio file") -> AudioInfo:
    """Read only the header of an audio file (fast for any length).

    Raises:
        SDSAudioError: missing, a directory, not audio libsndfile reads, or no samples.
    """
    path = check_audio_path(path, what)
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise SDSAudioError(f"cannot read {what} {path}: {exc}; give a WAV, FLAC or OGG file") from exc
    except OSError as exc:
        raise SDSAudioError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if info.frames <= 0 or info.samplerate <= 0:
        raise SDSAudioError(f"{what} {path} holds no samples")
    return AudioInfo(int(info.frames), int(info.samplerate), int(info.channels))


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
    path = check_audio_path(path)
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise SDSAudioError(f"cannot read audio file {path}: {exc}; give a WAV, FLAC or OGG file") from exc
    except OSError as exc:
        raise SDSAudioError(f"cannot read audio file {path}: {exc.strerror or exc}") from exc
    if data.shape[0] == 0:
        raise SDSAudioError(f"audio file {path} holds no samples")
    if not np.isfinite(data).all():
        raise SDSAudioError(f"audio file {path} holds NaN or infinite samples")
    peak = float(np.abs(data).max())
    if peak == 0.0 and not allow_silent:
        raise SDSAudioError(f"audio file {path} is all silence")
    if peak >= FULL_SCALE:
        clipped = clipped_fraction(data)
        if clipped > CLIP_WARN_FRACTION:
            warnings.warn(f"{path}: {clipped:.1%} of samples are at full scale (clipped audio)", stacklevel=2)
    audio = torch.from_numpy(np.ascontiguousarray(data.T)).unsqueeze(0)
    if sample_rate is not None and sample_rate != sr:
        audio = resample(audio, sr, sample_rate)
        sr = sample_rate
    if channels is not None:
        audio = match_channels(audio, channels)
    return audio.contiguous(), int(sr)


def save_audio(path: str | os.PathLike, audio: torch.Tensor, sample_rate: int, subtype: str | None = None) -> Path:
    """Write ``(C, T)`` or ``(1, C, T)`` audio atomically; samples are clipped to [-1, 1].

    The format follows the extension (:func:`output_format`); ``subtype`` (e.g. ``"PCM_16"``)
    applies where the format has it, otherwise the format's own (24-bit for WAV / FLAC).

    Raises:
        SDSAudioError: NaN audio, a batch of more than one, an unsupported extension, or an
            unwritable path.
    """
    fmt, default_subtype = output_format(path)
    if subtype is None or not sf.check_format(fmt, subtype):
        subtype = default_subtype
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
    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), audio.clamp(-1, 1).T.numpy(), int(sample_rate), subtype=subtype, format=fmt)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:   # e.g. a rate the format does not take
        raise SDSAudioError(f"cannot write {path} as {fmt} at {int(sample_rate)} Hz: {exc}; write .wav "
                            "instead") from exc
    return path
