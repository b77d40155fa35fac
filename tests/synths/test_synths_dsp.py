"""Pure DSP functions against direct (slow) oracles."""

from __future__ import annotations

import math

import pytest
import torch

from sds_audio.synths import dsp


def _kepler_reference(m: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Bisection on [M - e, M + e] (f is increasing), 80 halvings in float64."""
    lo, hi = m - e, m + e
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        f = mid - e * torch.sin(mid) - m
        lo = torch.where(f < 0, mid, lo)
        hi = torch.where(f < 0, hi, mid)
    return 0.5 * (lo + hi)


def test_kepler_solve_float64_is_exact_with_implicit_gradients():
    m = torch.linspace(-12.0, 12.0, 4001, dtype=torch.float64).requires_grad_(True)
    e = (torch.rand(4001, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.95).requires_grad_(True)
    psi = dsp.kepler_solve(m, e)
    ref = _kepler_reference(m.detach(), e.detach())
    assert (psi - ref).abs().max() < 1e-12
    gm, ge = torch.autograd.grad(psi.sum(), (m, e))
    denom = 1 - e.detach() * torch.cos(ref)
    torch.testing.assert_close(gm, 1 / denom, rtol=1e-10, atol=0)
    torch.testing.assert_close(ge, torch.sin(ref) / denom, rtol=1e-10, atol=1e-12)


def test_kepler_solve_float32_accuracy_worst_case():
    m = torch.linspace(-math.pi, math.pi, 20001, dtype=torch.float64)
    for ecc, tol in ((0.5, 1e-5), (0.9, 2e-5), (0.95, 1e-3)):
        e = torch.full_like(m, ecc)
        ref = _kepler_reference(m, e)
        psi = dsp.kepler_solve(m.float(), e.float())
        assert (psi.double() - ref).abs().max() < tol, ecc


def test_kepler_solve_without_feedback_is_identity():
    m = torch.linspace(-5, 5, 101)
    torch.testing.assert_close(dsp.kepler_solve(m, torch.zeros(101)), m)


def test_warped_time_is_the_integral_of_the_interpolated_multiplier():
    hop, sr = 7, 1000
    p = 1.0 + torch.rand(2, 11, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    start = dsp.warped_block_start(p, hop, sr)
    within = dsp.warped_block_offsets(p, hop, sr)
    per_sample = dsp.interpolate_control(p, hop)                     # (2, 10 * hop)
    reference = (torch.cumsum(per_sample, -1) - per_sample) / sr      # sum over m < n
    torch.testing.assert_close((start[..., None] + within).flatten(-2), reference, rtol=1e-12, atol=1e-14)


def test_oscillator_phase_long_and_high_in_float32():
    sr, n = 44100, 20 * 44100
    hop = dsp.control_hop(sr)
    _, n_blocks = dsp.control_grid(n, hop, sr, torch.float32)
    start = torch.arange(n_blocks, dtype=torch.float64) * hop / sr
    within = torch.arange(hop, dtype=torch.float32) / sr
    freq = torch.tensor([5000.0 + 1 / 3])
    phase = dsp.oscillator_phase(freq, start, within)[0, :n].double()
    exact = 2 * math.pi * float(freq) * torch.arange(n, dtype=torch.float64) / sr
    wrapped = torch.remainder(phase - exact + math.pi, 2 * math.pi) - math.pi
    assert wrapped.abs().max() < 2e-5                                   # radians, after 20 s


def test_interpolate_control_hits_control_points():
    values = torch.tensor([[0.0, 1.0, 3.0, 2.0]])
    out = dsp.interpolate_control(values, 4)
    torch.testing.assert_close(out[0, ::4], values[0, :-1])
    torch.testing.assert_close(out[0, 1], torch.tensor(0.25))
    torch.testing.assert_close(dsp.interpolate_control(values, 1), values[:, :-1])


def test_attack_decay_envelope_shape():
    t = torch.linspace(0, 2, 2001, dtype=torch.float64)
    env = dsp.attack_decay_envelope(t, torch.tensor([0.1], dtype=torch.float64),
                                    torch.tensor([0.5], dtype=torch.float64), torch.tensor([0.2], dtype=torch.float64))[0]
    assert env[0] == 0 and abs(float(env[50]) - 0.5) < 1e-12 and abs(float(env[100]) - 1.0) < 1e-12
    # 60 dB of the way from 1 to the sustain level after decay_s
    assert abs(float(env[600]) - (0.2 + 0.8e-3)) < 1e-9
    assert (env <= 1).all() and (env >= 0).all()


def test_damped_mode_sum_matches_direct_sum():
    gen = torch.Generator().manual_seed(0)
    b, m, n, sr = 2, 9, 3001, 8000
    freq = 20 + 3900 * torch.rand(b, m, generator=gen, dtype=torch.float64)
    decay = 0.01 + torch.rand(b, m, generator=gen, dtype=torch.float64)
    amp = torch.rand(b, m, generator=gen, dtype=torch.float64)
    t = torch.arange(n, dtype=torch.float64) / sr
    direct = (amp[..., None] * torch.exp(-math.log(1000) * t / decay[..., None])
              * torch.sin(2 * math.pi * freq[..., None] * t)).sum(1)
    torch.testing.assert_close(dsp.damped_mode_sum(freq, decay, amp, n, sr), direct, rtol=0, atol=1e-11)
    torch.testing.assert_close(dsp.damped_mode_sum(freq.float(), decay.float(), amp.float(), n, sr),
                               direct.float(), rtol=0, atol=1e-4)


def test_seeded_noise_is_reproducible_and_white():
    a = dsp.seeded_noise(3, 2, 50000)
    assert torch.equal(a, dsp.seeded_noise(3, 2, 50000))
    assert not torch.equal(a, dsp.seeded_noise(4, 2, 50000))
    assert abs(float(a.std()) - 1) < 0.02 and abs(float((a[0] * a[1]).mean())) < 0.02


def test_noise_band_has_unit_energy_and_its_band():
    sr, n = 16000, 4 * 16000
    one = torch.ones(1, 1, dtype=torch.float64)
    energies = []
    for seed in range(8):
        noise = dsp.seeded_noise(seed, 1, n, torch.float64)
        ir = dsp.noise_band_impulse(dsp.noise_spectrogram(noise, sr), 2000 * one, 1.0 * one, 0.5 * one, one, n, sr)
        energies.append(float(ir.square().sum()))
    # unit energy at amp 1 (one draw scatters by ~10 %: about 50 degrees of freedom)
    assert sum(energies) / len(energies) == pytest.approx(1.0, abs=0.1)
    ir = ir[0, 0]
    power = torch.fft.rfft(ir).abs().square()
    freqs = torch.fft.rfftfreq(n, 1 / sr)
    inside = power[(freqs > 2000 / 2 ** 0.5) & (freqs < 2000 * 2 ** 0.5)].sum()
    assert inside > 0.6 * power.sum()                                   # energy sits in the band
    # and it decays with the requested T60: 60 dB of energy envelope per 0.5 s
    head = ir[: sr // 10].square().mean()
    later = ir[sr // 2: sr // 2 + sr // 10].square().mean()
    assert 10 * math.log10(head / later) == pytest.approx(60.0, abs=6.0)


def test_convolve_truncated_matches_direct_convolution():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 1, 300, generator=gen, dtype=torch.float64)
    h = torch.randn(2, 3, 300, generator=gen, dtype=torch.float64)
    out = dsp.convolve_truncated(x, h)
    direct = torch.stack([torch.stack([
        torch.nn.functional.conv1d(torch.nn.functional.pad(x[b, 0], (299, 0))[None, None],
                                   h[b, c].flip(-1)[None, None])[0, 0]
        for c in range(3)]) for b in range(2)])
    torch.testing.assert_close(out, direct, rtol=1e-10, atol=1e-10)


def test_next_fast_fft_size_is_minimal_5_smooth():
    def smooth(k):
        for p in (2, 3, 5):
            while k % p == 0:
                k //= p
        return k == 1

    for n in list(range(1, 400)) + [88199, 44100 * 2 - 1]:
        got = dsp.next_fast_fft_size(n)
        assert got >= n and smooth(got)
        assert not any(smooth(k) for k in range(n, got))


def test_nyquist_gain_and_pan_law():
    sr = 10000
    g = dsp.nyquist_gain(torch.tensor([0.3 * sr, 0.46 * sr, 0.48 * sr, 0.5 * sr, 0.52 * sr]), sr)
    assert g[0] > 0.9999 and g[1] > 0.98 and abs(float(g[2]) - 0.5) < 1e-6 and g[3] < 0.02 and g[4] < 4e-4
    pan = dsp.constant_power_pan(torch.tensor([-1.0, 0.0, 0.4, 1.0]))
    torch.testing.assert_close(pan.square().sum(-1), torch.full((4,), 2.0))
    torch.testing.assert_close(pan[1], torch.ones(2))
    assert pan[0, 1].abs() < 1e-6 and pan[3, 0].abs() < 1e-6


def test_spectral_peaks_find_sinusoids_to_a_fraction_of_a_bin():
    sr, n_fft = 8000, 1024
    t = torch.arange(4 * n_fft, dtype=torch.float64) / sr
    tone = 1.0 * torch.sin(2 * math.pi * 1234.5 * t) + 0.3 * torch.sin(2 * math.pi * 440.0 * t)
    mags = torch.stft(tone, n_fft, n_fft // 4, window=torch.hann_window(n_fft, dtype=torch.float64),
                      return_complex=True).abs().mean(dim=-1)
    peaks_hz = dsp.spectral_peaks(mags, 2) * sr / n_fft
    assert peaks_hz.shape == (2,)
    assert float(peaks_hz[0]) == pytest.approx(1234.5, abs=0.1 * sr / n_fft)     # the largest first
    assert float(peaks_hz[1]) == pytest.approx(440.0, abs=0.1 * sr / n_fft)
    assert dsp.spectral_peaks(mags, 1).shape == (1,)
    assert dsp.spectral_peaks(torch.zeros(64), 3).numel() == 0                     # silence: no peak
    assert dsp.spectral_peaks(torch.linspace(0, 1, 64), 3).numel() == 0            # monotone: no peak
    with pytest.raises(ValueError, match="1-D"):
        dsp.spectral_peaks(torch.ones(2, 8), 1)
