"""Training losses of the codec: spectral reconstruction, adversarial (hinge), feature matching.

The KL term of the VAE lives with the bottleneck
(:func:`~sds_audio.codec.bottleneck.gaussian_kl`), the commitment loss with the
quantiser. Spectral transforms come from :mod:`sds_audio.spectral`
(torchaudio underneath).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..spectral import MelMagnitudes, MultiResolutionSTFTDistance, log_magnitude_distance

DEFAULT_STFT_N_FFTS: tuple[int, ...] = (256, 512, 1024, 2048)
DEFAULT_MEL_SCALES: tuple[tuple[int, int], ...] = ((512, 40), (2048, 80))


class ReconstructionLoss(nn.Module):
    """``stft_weight * MR-STFT + mel_weight * log-mel L1`` between two signals.

    MR-STFT: :class:`~sds_audio.spectral.MultiResolutionSTFTDistance` (mean |log
    magnitude| difference plus ``linear_weight`` times the mean |magnitude|
    difference, averaged over ``stft_n_ffts``). Mel: mean |log mel magnitude|
    difference averaged over ``mel_scales`` = ``((n_fft, n_mels), ...)``.
    ``eps`` is the power floor under every square root (it sets how quiet a
    difference still counts: ``1e-5`` ~ -75 dB below a full-scale tone).

    ``forward(x, y)`` with ``(B, C, T)`` signals returns a dict of scalars
    ``{"stft", "mel", "total"}``.
    """

    def __init__(self, sample_rate: int, stft_n_ffts: Sequence[int] = DEFAULT_STFT_N_FFTS,
                 mel_scales: Sequence[tuple[int, int]] = DEFAULT_MEL_SCALES, stft_weight: float = 1.0,
                 mel_weight: float = 1.0, linear_weight: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.stft = MultiResolutionSTFTDistance(stft_n_ffts, log_weight=1.0, linear_weight=linear_weight, eps=eps)
        self.mels = nn.ModuleList(MelMagnitudes(sample_rate, n_fft=n, n_mels=m, eps=eps) for n, m in mel_scales)
        self.stft_weight = float(stft_weight)
        self.mel_weight = float(mel_weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        stft = self.stft(x, y).mean()
        mel = torch.stack([log_magnitude_distance(m(x), m(y)).mean() for m in self.mels]).mean()
        return {"stft": stft, "mel": mel, "total": self.stft_weight * stft + self.mel_weight * mel}


def discriminator_hinge_loss(real_logits: Sequence[torch.Tensor], fake_logits: Sequence[torch.Tensor]
                             ) -> torch.Tensor:
    """``mean_k [ mean(relu(1 - D_k(real))) + mean(relu(1 + D_k(fake))) ]`` over scales ``k``."""
    terms = [torch.relu(1 - r).mean() + torch.relu(1 + f).mean() for r, f in zip(real_logits, fake_logits)]
    return torch.stack(terms).mean()


def generator_hinge_loss(fake_logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """``mean_k mean(relu(1 - D_k(fake)))``: the generator's adversarial loss."""
    return torch.stack([torch.relu(1 - f).mean() for f in fake_logits]).mean()


def feature_matching_loss(real_features: Sequence[Sequence[torch.Tensor]],
                          fake_features: Sequence[Sequence[torch.Tensor]], eps: float = 1e-8) -> torch.Tensor:
    """Relative L1 between discriminator features: ``mean over layers of |r - f|.mean() / |r|.mean()``.

    ``real_features`` should be detached by the caller (the target). Zero when
    the inputs are identical.
    """
    terms = []
    for reals, fakes in zip(real_features, fake_features):
        for r, f in zip(reals, fakes):
            terms.append((r - f).abs().mean() / (r.abs().mean() + eps))
    return torch.stack(terms).mean()
