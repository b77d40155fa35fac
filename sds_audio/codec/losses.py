"""Training losses of the codec: spectral reconstruction, phase advance, adversarial (hinge), feature matching.

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


def phase_advance_distance(x: torch.Tensor, y: torch.Tensor, n_fft: int = 1024, hop: int | None = None,
                           rel_floor: float = 1e-3) -> torch.Tensor:
    """How far the per-frame phase advance (instantaneous frequency) of ``x`` is from ``y``'s, in [0, 2].

    For every bin and frame, ``a = X[n] conj(X[n-1])`` and ``b = Y[n] conj(Y[n-1])``
    (STFT with a Hann window, hop ``n_fft / 4`` by default); the distance is
    ``1 - Re(a conj(b)) / (max(|a|, f) |b|)`` with ``f = rel_floor * mean |b|`` over the
    signal's bins and frames (``1 - cos`` of the angle between the two advances where
    ``x`` is not near silent), averaged with weights
    ``sqrt|b|`` (about ``|Y|``: loud bins of the target count, silent ones do not).
    Magnitude errors are the other terms' job; this one tells a decoder whether its
    partials turn at the right speed, which magnitude losses only see through
    cancellation. The floor ``f`` bounds the gradient where ``x`` is silent and
    ``y`` is not; it leaves identical signals a little above 0 (bins quieter than
    ``f`` count as partly wrong; ~1e-3 for a float32 pure tone). ``(B, C, T)`` inputs; returns ``(B,)``.
    Finite on silence.
    """
    hop = hop if hop is not None else n_fft // 4
    window = torch.hann_window(n_fft, device=x.device, dtype=torch.float32)

    def advance(s: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(s.reshape(-1, s.shape[-1]).float(), n_fft, hop, window=window, return_complex=True)
        return spec[..., 1:] * spec[..., :-1].conj()

    a, b = advance(x), advance(y.detach())
    b_abs = b.abs()
    floor = rel_floor * b_abs.mean(dim=(-2, -1), keepdim=True)
    cos = (a * b.conj()).real / (torch.maximum(a.abs(), floor) * b_abs + 1e-20)
    w = b_abs.sqrt()
    per_signal = ((1.0 - cos) * w).sum(dim=(-2, -1)) / (w.sum(dim=(-2, -1)) + 1e-12)
    return per_signal.reshape(x.shape[0], -1).mean(dim=1)


class ReconstructionLoss(nn.Module):
    """``stft_weight * MR-STFT + mel_weight * log-mel L1 + phase_weight * phase advance`` between two signals.

    MR-STFT: :class:`~sds_audio.spectral.MultiResolutionSTFTDistance` (mean |log
    magnitude| difference plus ``linear_weight`` times the mean |magnitude|
    difference, plus ``convergence_weight`` times the spectral convergence, averaged
    over ``stft_n_ffts``). Mel: mean |log mel magnitude|
    difference averaged over ``mel_scales`` = ``((n_fft, n_mels), ...)``.
    ``eps`` is the power floor under every square root (it sets how quiet a
    difference still counts: ``1e-5`` ~ -75 dB below a full-scale tone).

    Phase: :func:`phase_advance_distance` at ``phase_n_fft`` (``y`` is the target),
    off when ``phase_weight`` is 0.

    ``forward(x, y)`` with ``(B, C, T)`` signals returns a dict of scalars
    ``{"stft", "mel", "phase", "total"}``.
    """

    def __init__(self, sample_rate: int, stft_n_ffts: Sequence[int] = DEFAULT_STFT_N_FFTS,
                 mel_scales: Sequence[tuple[int, int]] = DEFAULT_MEL_SCALES, stft_weight: float = 1.0,
                 mel_weight: float = 1.0, linear_weight: float = 0.1, eps: float = 1e-5,
                 phase_weight: float = 0.0, phase_n_fft: int = 1024, convergence_weight: float = 0.0):
        super().__init__()
        self.stft = MultiResolutionSTFTDistance(stft_n_ffts, log_weight=1.0, linear_weight=linear_weight, eps=eps,
                                                convergence_weight=convergence_weight)
        self.mels = nn.ModuleList(MelMagnitudes(sample_rate, n_fft=n, n_mels=m, eps=eps) for n, m in mel_scales)
        self.stft_weight = float(stft_weight)
        self.mel_weight = float(mel_weight)
        self.phase_weight = float(phase_weight)
        self.phase_n_fft = int(phase_n_fft)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        stft = self.stft(x, y).mean()
        mel = torch.stack([log_magnitude_distance(m(x), m(y)).mean() for m in self.mels]).mean()
        total = self.stft_weight * stft + self.mel_weight * mel
        phase = torch.zeros((), device=x.device)
        if self.phase_weight > 0:
            phase = phase_advance_distance(x, y, self.phase_n_fft).mean()
            total = total + self.phase_weight * phase
        return {"stft": stft, "mel": mel, "phase": phase, "total": total}


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
