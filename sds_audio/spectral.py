"""Multi-resolution spectral representations and distances.

torchaudio computes the transforms (``torchaudio.transforms.Spectrogram`` and
``MelSpectrogram``: windows are registered buffers, STFTs run through
``torch.stft``); this module only chooses resolutions and turns power spectra
into silence-safe magnitudes::

    magnitude = sqrt(power + eps)

so an all-zero input gives finite values and finite gradients (the plain
``|STFT|`` has an undefined derivative at zero).

Shapes: audio is ``(batch, channels, samples)``; one resolution's magnitudes are
``(batch, channels, freq_bins, frames)``. Distances reduce over everything but
the batch and return one value per batch item, ``(batch,)``, so a caller can
rank candidates or average as it likes.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torchaudio
from torch import nn

DEFAULT_N_FFTS: tuple[int, ...] = (512, 1024, 2048, 4096)


def _check_audio(audio: torch.Tensor) -> torch.Tensor:
    if audio.dim() != 3:
        raise ValueError(f"audio must be (batch, channels, samples), got shape {tuple(audio.shape)}")
    return audio


class MultiResolutionSTFT(nn.Module):
    """STFT magnitudes at several window sizes (Hann window, hop = n_fft * hop_fraction).

    Args:
        n_ffts: window / FFT sizes in samples.
        hop_fraction: hop length as a fraction of each window.
        eps: power floor inside the square root (silence safety).
    """

    def __init__(self, n_ffts: Sequence[int] = DEFAULT_N_FFTS, hop_fraction: float = 0.25, eps: float = 1e-8):
        super().__init__()
        if not n_ffts:
            raise ValueError("n_ffts must name at least one window size")
        self.n_ffts = tuple(int(n) for n in n_ffts)
        self.eps = float(eps)
        self.transforms = nn.ModuleList(
            torchaudio.transforms.Spectrogram(
                n_fft=n, hop_length=max(1, int(n * hop_fraction)), power=2.0, center=True, pad_mode="constant")
            for n in self.n_ffts
        )

    def forward(self, audio: torch.Tensor) -> list[torch.Tensor]:
        """``(B, C, T)`` -> list of ``(B, C, n_fft // 2 + 1, frames)`` magnitudes."""
        _check_audio(audio)
        return [torch.sqrt(t(audio) + self.eps) for t in self.transforms]


class MelMagnitudes(nn.Module):
    """Mel-scale magnitudes ``(B, C, n_mels, frames)`` via ``torchaudio.transforms.MelSpectrogram``."""

    def __init__(self, sample_rate: int, n_fft: int = 2048, n_mels: int = 80, hop_length: int | None = None,
                 f_min_hz: float = 20.0, f_max_hz: float | None = None, eps: float = 1e-8):
        super().__init__()
        self.eps = float(eps)
        self.transform = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length or n_fft // 4, n_mels=n_mels,
            f_min=f_min_hz, f_max=f_max_hz, power=2.0, center=True, pad_mode="constant", norm="slaney",
            mel_scale="slaney")

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.transform(_check_audio(audio)) + self.eps)


def _per_item_mean(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).mean(dim=1)


def linear_magnitude_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of magnitudes, per batch item ``(B,)``."""
    return _per_item_mean((a - b).abs())


def spectral_convergence(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a - b||_F / ||b||_F`` per batch item (``b`` is the reference): scale-free, led by the loudest bins."""
    return (a - b).flatten(1).norm(dim=1) / (b.flatten(1).norm(dim=1) + 1e-12)


def log_magnitude_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of log magnitudes, per batch item ``(B,)``."""
    return _per_item_mean((torch.log(a) - torch.log(b)).abs())


class MultiResolutionSTFTDistance(nn.Module):
    """Spectral distance averaged over resolutions:
    ``log_weight * log + linear_weight * linear + convergence_weight * spectral convergence``.

    The log term weighs every bin alike, so a broad "average" spectrum scores well
    against a few loud partials; spectral convergence (relative Frobenius error,
    ``y`` the reference) is led by exactly those partials.

    ``forward(x, y)`` takes two ``(B, C, T)`` signals (``y`` may have batch 1 and
    is broadcast) and returns ``(B,)``.
    """

    def __init__(self, n_ffts: Sequence[int] = DEFAULT_N_FFTS, log_weight: float = 1.0,
                 linear_weight: float = 1.0, hop_fraction: float = 0.25, eps: float = 1e-8,
                 convergence_weight: float = 0.0):
        super().__init__()
        self.stft = MultiResolutionSTFT(n_ffts, hop_fraction=hop_fraction, eps=eps)
        self.log_weight = float(log_weight)
        self.linear_weight = float(linear_weight)
        self.convergence_weight = float(convergence_weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != y.shape[1:]:
            raise ValueError(f"channel/sample shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        total = x.new_zeros(x.shape[0])
        for sx, sy in zip(self.stft(x), self.stft(y)):
            sy = sy.expand_as(sx)
            if self.log_weight:
                total = total + self.log_weight * log_magnitude_distance(sx, sy)
            if self.linear_weight:
                total = total + self.linear_weight * linear_magnitude_distance(sx, sy)
            if self.convergence_weight:
                total = total + self.convergence_weight * spectral_convergence(sx, sy)
        return total / len(self.stft.n_ffts)
