"""Spectral ops: spectral convergence and the MR-STFT distance terms."""

from __future__ import annotations

import torch

from sds_audio.spectral import MultiResolutionSTFTDistance


def test_spectral_convergence_is_relative_and_led_by_loud_bins():
    from sds_audio.spectral import spectral_convergence

    ref = torch.tensor([[10.0, 0.1, 0.1, 0.1]])
    assert float(spectral_convergence(ref, ref)[0]) == 0.0
    missing_peak = torch.tensor([[0.1, 0.1, 0.1, 0.1]])
    missing_floor = torch.tensor([[10.0, 0.0, 0.0, 0.0]])
    assert float(spectral_convergence(missing_peak, ref)[0]) > 0.9            # losing the partial costs ~1
    assert float(spectral_convergence(missing_floor, ref)[0]) < 0.02          # losing the floor costs little
    torch.testing.assert_close(spectral_convergence(3 * missing_peak, 3 * ref), spectral_convergence(missing_peak, ref))


def test_mr_stft_distance_convergence_term_adds_on():
    x, y = torch.randn(2, 1, 4096), torch.randn(2, 1, 4096)
    base = MultiResolutionSTFTDistance((256, 512))
    with_sc = MultiResolutionSTFTDistance((256, 512), convergence_weight=0.5)
    assert (with_sc(x, y) > base(x, y)).all()
    assert float(with_sc(x, x).abs().max()) < 1e-6
