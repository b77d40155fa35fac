"""Spectral optimal transport: how far energy must move along the frequency axis.

Per STFT frame the magnitude spectrum, raised to ``power`` and normalised to sum 1
over frequency, is a probability distribution on the bin positions ``x_i`` (Hz, or
octaves on a log-frequency axis). The distance between two such frames is the 1-D
Wasserstein-1 (earth mover's) distance, which on the line is exact and cheap::

    W1(p, q) = sum_i |P_i - Q_i| * (x_{i+1} - x_i),     P, Q = cumulative sums of p, q

(``scipy.stats.wasserstein_distance(x, x, p, q)`` computes the same number).

Why: the multi-resolution STFT distance compares spectra bin by bin, so it is a comb
in frequency: when a rendered partial and a target partial do not overlap, moving
the partial does not change the distance and its frequency gets no gradient. W1
grows with the gap (a single partial shifted by ``d`` octaves costs ``d``), so, for
one partial, its gradient points toward the target energy from any distance. It
ignores loudness (each frame is normalised), so it complements, rather than replaces,
a magnitude distance.

Caveat (measured in ``benchmarks/inverse_synthesis.py``): the *value* stays smooth for
dense sounds too, but the *gradient* with respect to a frequency inherits the ripple
of every STFT magnitude: where partials are not resolved, a frame's magnitudes depend
on their relative phases, whose derivative in frequency grows with time. For a lone
sinusoid the ripple rides on the slope (the tests check the mean over nearby probes);
for random FM patches it dominates, and Adam does not follow the smooth landscape.
Use the value for searches (grid / line search over a pitch), the gradient with care.

Silence: a frame's distribution is ``(m**power + floor) / sum(m**power + floor)``
with a tiny ``floor``, so an all-zero frame is the uniform distribution (finite value,
finite gradient) and a frame with any real content is unchanged to within the floor.
Frames are averaged with equal weight, or, with ``frame_weighting="target"``, with
weights proportional to the target frame's energy (detached), so near-silent target
frames (an ending decay, where the normalised spectrum is mostly noise floor) do not
dominate.

Shapes: magnitudes ``(batch, channels, freq_bins, frames)`` as from
:class:`~sds_audio.spectral.MultiResolutionSTFT`; distances return ``(batch,)``.
Units: Hz on a linear axis, octaves on a log axis.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .errors import SDSAudioError
from .spectral import DEFAULT_N_FFTS, MultiResolutionSTFT

FRAME_WEIGHTINGS = ("uniform", "target")


def bin_positions(n_fft: int, sample_rate: int, log_frequency: bool = False, f_min_hz: float = 20.0,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Positions of the ``n_fft // 2 + 1`` STFT bins: Hz, or ``log2(max(f, f_min_hz) / f_min_hz)`` octaves.

    On the log axis every bin below ``f_min_hz`` (DC included) sits at 0 octaves.
    """
    hz = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * (sample_rate / n_fft)
    if log_frequency:
        return torch.log2(hz.clamp(min=f_min_hz) / f_min_hz).to(dtype)
    return hz.to(dtype)


def spectral_distribution(magnitude: torch.Tensor, power: float = 2.0, floor: float = 1e-12) -> torch.Tensor:
    """Normalise ``(..., freq_bins, frames)`` magnitudes to a distribution over frequency per frame.

    ``p = (magnitude**power + floor) / sum_f (magnitude**power + floor)``; an all-zero
    frame gives the uniform distribution.
    """
    mass = magnitude.abs().pow(power) + floor
    return mass / mass.sum(dim=-2, keepdim=True)


def wasserstein_1d(p: torch.Tensor, q: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Exact W1 between distributions ``p``, ``q`` ``(..., bins, frames)`` on sorted ``positions`` ``(bins,)``.

    Returns ``(..., frames)`` in the units of ``positions``.
    """
    if p.shape != q.shape:
        p, q = torch.broadcast_tensors(p, q)
    spacing = (positions[1:] - positions[:-1]).to(p.dtype)                           # (bins-1,)
    gap = (torch.cumsum(p, dim=-2) - torch.cumsum(q, dim=-2))[..., :-1, :]            # last CDF value is 1 - 1
    return (gap.abs() * spacing[:, None]).sum(dim=-2)


def spectral_ot_distance(mag_x: torch.Tensor, mag_y: torch.Tensor, positions: torch.Tensor, power: float = 2.0,
                         frame_weighting: str = "uniform") -> torch.Tensor:
    """Mean per-frame W1 between two ``(B, C, bins, frames)`` magnitude stacks -> ``(B,)``.

    ``mag_y`` may have batch 1 (broadcast). ``frame_weighting="target"`` weights frames by
    the energy of ``mag_y`` (per batch item and channel, detached); ``"uniform"`` averages them.
    """
    if frame_weighting not in FRAME_WEIGHTINGS:
        raise SDSAudioError(f"frame_weighting must be one of {', '.join(FRAME_WEIGHTINGS)}, got {frame_weighting!r}")
    w1 = wasserstein_1d(spectral_distribution(mag_x, power), spectral_distribution(mag_y, power),
                        positions.to(mag_x.device))                                   # (B, C, frames)
    if frame_weighting == "uniform":
        return w1.flatten(1).mean(dim=1)
    energy = mag_y.detach().pow(2).sum(dim=-2)                                        # (B|1, C, frames)
    weight = energy / energy.sum(dim=-1, keepdim=True).clamp(min=1e-30)
    weight = torch.where(energy.sum(dim=-1, keepdim=True) > 0, weight, torch.full_like(weight, 1.0 / w1.shape[-1]))
    return (w1 * weight).sum(dim=-1).mean(dim=-1)


class SpectralOTDistance(nn.Module):
    """Multi-resolution spectral OT distance: mean over resolutions of :func:`spectral_ot_distance`.

    ``forward(x, y)`` takes two ``(B, C, T)`` signals (``y`` may have batch 1) and returns
    ``(B,)`` in octaves (``log_frequency=True``) or Hz.

    Args:
        sample_rate: of the audio, for the bin positions.
        n_ffts: STFT window sizes (Hann, hop ``n_fft * hop_fraction``), as in
            :class:`~sds_audio.spectral.MultiResolutionSTFT`.
        log_frequency: measure transport in octaves above ``f_min_hz`` instead of Hz.
        f_min_hz: bottom of the log axis (bins below it are merged at 0 octaves).
        power: the distribution is ``magnitude**power`` (2: energy, 1: magnitude).
        frame_weighting: ``"uniform"`` or ``"target"`` (frames weighted by target energy).
    """

    def __init__(self, sample_rate: int, n_ffts: Sequence[int] = DEFAULT_N_FFTS, log_frequency: bool = True,
                 f_min_hz: float = 20.0, power: float = 2.0, frame_weighting: str = "target",
                 hop_fraction: float = 0.25, eps: float = 1e-8):
        super().__init__()
        if frame_weighting not in FRAME_WEIGHTINGS:
            raise SDSAudioError(f"frame_weighting must be one of {', '.join(FRAME_WEIGHTINGS)}, "
                                f"got {frame_weighting!r}")
        if not (power > 0 and math.isfinite(power)):
            raise SDSAudioError(f"power must be a positive number, got {power!r}")
        if not (0 < f_min_hz < sample_rate / 2):
            raise SDSAudioError(f"f_min_hz must lie between 0 and the Nyquist frequency, got {f_min_hz!r}")
        self.stft = MultiResolutionSTFT(n_ffts, hop_fraction=hop_fraction, eps=eps)
        self.sample_rate = int(sample_rate)
        self.power = float(power)
        self.frame_weighting = frame_weighting
        for i, n in enumerate(self.stft.n_ffts):
            self.register_buffer(f"positions_{i}", bin_positions(n, sample_rate, log_frequency, f_min_hz),
                                 persistent=False)

    def positions(self) -> list[torch.Tensor]:
        """Bin positions ``(n_fft // 2 + 1,)`` of each resolution."""
        return [getattr(self, f"positions_{i}") for i in range(len(self.stft.n_ffts))]

    def from_magnitudes(self, mags_x: Sequence[torch.Tensor], mags_y: Sequence[torch.Tensor]) -> torch.Tensor:
        """The distance from precomputed ``self.stft`` magnitudes (one ``(B, C, bins, frames)`` per resolution)."""
        total = 0.0
        for mx, my, pos in zip(mags_x, mags_y, self.positions()):
            total = total + spectral_ot_distance(mx, my, pos, self.power, self.frame_weighting)
        return total / len(self.stft.n_ffts)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1:] != y.shape[1:]:
            raise ValueError(f"channel/sample shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
        return self.from_magnitudes(self.stft(x), self.stft(y))
