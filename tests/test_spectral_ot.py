"""Spectral optimal transport: values against oracles, gradients, silence, batching, the far-partial property."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from sds_audio.errors import SDSAudioError
from sds_audio.spectral import MultiResolutionSTFTDistance
from sds_audio.spectral_ot import (SpectralOTDistance, bin_positions, spectral_distribution, spectral_ot_distance,
                                   wasserstein_1d)

SR = 8000
N = 2048
N_FFTS = (128, 256, 512)


def _quantile_w1(x: np.ndarray, p: np.ndarray, q: np.ndarray) -> float:
    """W1 as the integral over u in [0, 1] of |F^-1(u) - G^-1(u)| (exact, piecewise constant quantiles)."""
    cp, cq = np.cumsum(p) / p.sum(), np.cumsum(q) / q.sum()
    us = np.unique(np.concatenate([[0.0], cp, cq, [1.0]]).clip(0, 1))
    total = 0.0
    for lo, hi in zip(us[:-1], us[1:]):
        mid = 0.5 * (lo + hi)
        xa = x[min(np.searchsorted(cp, mid), len(x) - 1)]
        xb = x[min(np.searchsorted(cq, mid), len(x) - 1)]
        total += (hi - lo) * abs(xa - xb)
    return total


def _tone(freq_hz, n=N, sr=SR):
    t = torch.arange(n, dtype=torch.as_tensor(freq_hz).dtype) / sr
    return torch.sin(2 * math.pi * torch.as_tensor(freq_hz)[..., None] * t)


@pytest.mark.parametrize("log_frequency", [False, True], ids=["hz", "octaves"])
def test_values_match_scipy_and_quantile_oracle(log_frequency):
    gen = torch.Generator().manual_seed(0)
    mag_x = torch.rand(2, 1, 65, 3, generator=gen, dtype=torch.float64) ** 4
    mag_y = torch.rand(1, 1, 65, 3, generator=gen, dtype=torch.float64) ** 4
    pos = bin_positions(128, SR, log_frequency, f_min_hz=100.0, dtype=torch.float64)
    p, q = spectral_distribution(mag_x), spectral_distribution(mag_y)
    w1 = wasserstein_1d(p, q, pos)                                                  # (2, 1, 3)
    assert w1.shape == (2, 1, 3)
    x = pos.numpy()
    for b in range(2):
        for f in range(3):
            pb, qb = p[b, 0, :, f].numpy(), q[0, 0, :, f].numpy()
            assert float(w1[b, 0, f]) == pytest.approx(wasserstein_distance(x, x, pb, qb), rel=1e-10)
            assert float(w1[b, 0, f]) == pytest.approx(_quantile_w1(x, pb, qb), rel=1e-10)
    # the per-item distance is the mean over frames (uniform weighting)
    d = spectral_ot_distance(mag_x, mag_y, pos, frame_weighting="uniform")
    torch.testing.assert_close(d, w1.flatten(1).mean(1))


def test_a_shifted_partial_costs_its_shift():
    """A single spectral line moved by k bins costs k bin spacings (Hz) or its octave distance."""
    mag_x = torch.zeros(1, 1, 33, 1, dtype=torch.float64)
    mag_y = torch.zeros_like(mag_x)
    mag_x[0, 0, 8, 0], mag_y[0, 0, 20, 0] = 1.0, 1.0
    pos = bin_positions(64, SR, dtype=torch.float64)
    assert float(spectral_ot_distance(mag_x, mag_y, pos)) == pytest.approx(12 * SR / 64, rel=1e-6)
    pos_oct = bin_positions(64, SR, log_frequency=True, f_min_hz=50.0, dtype=torch.float64)
    assert float(spectral_ot_distance(mag_x, mag_y, pos_oct)) == pytest.approx(math.log2(20 / 8), rel=1e-6)


def test_gradients_match_finite_differences():
    gen = torch.Generator().manual_seed(1)
    mag_x = (torch.rand(2, 1, 17, 2, generator=gen, dtype=torch.float64) + 0.1).requires_grad_()
    mag_y = torch.rand(1, 1, 17, 2, generator=gen, dtype=torch.float64) + 0.1
    pos = bin_positions(32, SR, log_frequency=True, dtype=torch.float64)
    for weighting in ("uniform", "target"):
        assert torch.autograd.gradcheck(lambda m: spectral_ot_distance(m, mag_y, pos, 2.0, weighting), (mag_x,))
    # and through the STFT, from audio
    dist = SpectralOTDistance(SR, n_ffts=(32, 64)).double()
    audio = torch.randn(2, 1, 96, generator=gen, dtype=torch.float64).requires_grad_()
    target = torch.randn(1, 1, 96, generator=gen, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda a: dist(a, target), (audio,))


def test_silence_is_finite():
    dist = SpectralOTDistance(SR, n_ffts=N_FFTS)
    silent = torch.zeros(2, 2, N, requires_grad=True)
    tone = _tone(440.0).float().expand(1, 2, N)
    for x, y in ((silent, tone), (silent, torch.zeros(1, 2, N)), (tone.clone().requires_grad_(), silent.detach())):
        value = dist(x, y)
        value.sum().backward()
        assert torch.isfinite(value).all()
        assert torch.isfinite(x.grad).all()
        x.grad = None
    # an all-zero magnitude frame is the uniform distribution; two of them are at distance 0
    zeros = torch.zeros(1, 1, 9, 2, requires_grad=True)
    p = spectral_distribution(zeros)
    torch.testing.assert_close(p, torch.full_like(p, 1 / 9))
    d = spectral_ot_distance(zeros, torch.zeros(1, 1, 9, 2), bin_positions(16, SR), frame_weighting="target")
    d.sum().backward()
    assert d.item() == 0.0 and torch.isfinite(zeros.grad).all()


def test_batch_items_are_independent():
    gen = torch.Generator().manual_seed(2)
    dist = SpectralOTDistance(SR, n_ffts=N_FFTS)
    x = torch.randn(3, 2, N, generator=gen)
    y = torch.randn(1, 2, N, generator=gen)
    together = dist(x, y)
    assert together.shape == (3,)
    alone = torch.cat([dist(x[i:i + 1], y) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-6)
    # a per-item target gives the same as the broadcast one
    torch.testing.assert_close(dist(x, y.expand(3, -1, -1)), together, rtol=1e-5, atol=1e-6)


def test_ot_grows_with_the_frequency_gap_where_mrstft_saturates():
    ot = SpectralOTDistance(SR, n_ffts=N_FFTS)
    mr = MultiResolutionSTFTDistance(n_ffts=N_FFTS)
    target = _tone(500.0)[None, None].float()
    gaps_oct = torch.tensor([0.25, 0.5, 1.0, 1.5, 2.0, 2.5])
    probes = _tone(500.0 * 2 ** gaps_oct)[:, None].float()                            # (6, 1, N)
    d_ot, d_mr = ot(probes, target), mr(probes, target)
    # OT: strictly increasing, and close to the gap in octaves (one partial moved by d octaves costs d)
    assert (d_ot[1:] > d_ot[:-1]).all(), d_ot
    torch.testing.assert_close(d_ot, gaps_oct, rtol=0.05, atol=0.02)
    # MR-STFT: once the partials stop overlapping it saturates: 5x the gap (1/2 -> 2.5 octaves) costs
    # OT 5x as much but MR-STFT < 1.5x, and it is not even monotone (leakage patterns differ per probe)
    assert float(d_ot[-1] / d_ot[1]) > 4.5
    assert float(d_mr[-1] / d_mr[1]) < 1.5, d_mr
    assert not (d_mr[2:] > d_mr[1:-1]).all(), d_mr
    # gradient w.r.t. the frequency of probes about one octave above the target, in units of
    # d log2(f / 500) / df: OT pulls every probe down toward the target (a ripple from the edge
    # frames rides on the slope, so look at 9 probes); MR-STFT has no consistent direction
    freq = torch.linspace(980.0, 1020.0, 9, dtype=torch.float64, requires_grad=True)
    ot.double()(_tone(freq)[:, None], target.double()).sum().backward()
    g_ot = freq.grad * freq.detach() * math.log(2)
    freq.grad = None
    mr.double()(_tone(freq)[:, None], target.double()).sum().backward()
    g_mr = freq.grad
    assert int((g_ot > 0).sum()) >= 7, g_ot
    assert 0.7 < float(g_ot.mean()) < 1.3, g_ot
    assert float(g_mr.mean().abs()) < 0.5 * float(g_mr.abs().mean()), g_mr


def test_bad_settings_raise():
    with pytest.raises(SDSAudioError, match="frame_weighting"):
        SpectralOTDistance(SR, frame_weighting="loudest")
    with pytest.raises(SDSAudioError, match="power"):
        SpectralOTDistance(SR, power=0.0)
    with pytest.raises(SDSAudioError, match="f_min_hz"):
        SpectralOTDistance(SR, f_min_hz=SR)
