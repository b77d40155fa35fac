"""``roundtrip``: encode and decode an audio file with a codec (the ``sds-audio codec roundtrip`` command).

The input is read with :func:`sds_audio.audio_io.load_audio`, resampled to the
codec's rate and converted to its channel count, zero-padded to a multiple of
the hop, encoded (posterior mean; quantised with every codebook for an RVQ
codec), decoded, cut back to the input length and written atomically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ..audio_io import load_audio, save_audio
from ..spectral import MultiResolutionSTFTDistance
from .io import load_codec
from .model import Codec


@dataclass
class RoundtripResult:
    """What :func:`roundtrip` did: output path, sizes, and how close the reconstruction is.

    ``spectral_distance``: :class:`~sds_audio.spectral.MultiResolutionSTFTDistance`
    (log + linear magnitudes) between input and output; ``snr_db``: waveform SNR.
    """

    out_path: Path
    sample_rate: int
    n_samples: int
    latent_shape: tuple[int, ...]
    spectral_distance: float
    snr_db: float


@torch.no_grad()
def roundtrip(in_wav: str | os.PathLike, out_wav: str | os.PathLike, *, weights: str | os.PathLike | None = None,
              codec: Codec | None = None) -> RoundtripResult:
    """Encode ``in_wav`` to latents and decode it to ``out_wav`` (24-bit WAV at the codec's rate).

    Args:
        weights: codec ``.safetensors`` (default: the shipped weights); ignored when
            ``codec`` is given.
        codec: an already loaded codec.

    Raises:
        SDSAudioError: unreadable input, missing / broken weights, unwritable output.
    """
    if codec is None:
        codec = load_codec(weights)
    codec.eval()
    device = next(codec.parameters()).device
    audio, sr = load_audio(in_wav, sample_rate=codec.sample_rate, channels=codec.channels)
    audio = audio.to(device)
    n = audio.shape[-1]
    latents = codec.encode(audio)
    if codec.quantizer is not None:
        latents = codec.quantize(latents)[0]
    recon = codec.decode(latents)[..., :n]
    distance = MultiResolutionSTFTDistance().to(device)(recon, audio).item()
    err = (recon - audio).pow(2).sum().item()
    snr_db = 10.0 * torch.log10(torch.tensor((audio.pow(2).sum().item() + 1e-12) / (err + 1e-12))).item()
    path = save_audio(out_wav, recon.cpu(), codec.sample_rate)
    return RoundtripResult(path, codec.sample_rate, n, tuple(latents.shape), distance, snr_db)
