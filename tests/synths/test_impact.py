"""ImpactSynth: gradients vs finite differences, ranges, batching, bit-identical noise, memory chunking."""

from __future__ import annotations

import math

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.synths import ImpactSynth, dsp

SR = 8000
N = 1024


def _patch(synth: ImpactSynth, gen: torch.Generator) -> ImpactSynth:
    """Random patch with every mode and band below Nyquist and decays that matter within N samples."""
    b = synth.batch_size

    def logu(lo, hi, n):
        return torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * torch.rand(b, n, generator=gen,
                                                                                       dtype=torch.float64))

    m, k = synth.n_modes, synth.n_bands
    return synth.set_controls({
        "mode_freq_hz": logu(60, 3500, m), "mode_decay_s": logu(0.01, 0.5, m), "mode_amp": logu(0.01, 0.5, m),
        "band_center_hz": logu(200, 3000, k), "band_width_oct": logu(0.3, 2.0, k),
        "band_decay_s": logu(0.06, 0.5, k), "band_amp": logu(0.05, 0.8, k),
        "dry_gain": 0.2 + 0.6 * torch.rand(b, generator=gen, dtype=torch.float64),
    })


@pytest.mark.parametrize("channels", [1, 2])
def test_gradients_match_finite_differences(channels, fd_errors, fd_close):
    gen = torch.Generator().manual_seed(2)
    synth = _patch(ImpactSynth(n_modes=12, n_bands=3, sample_rate=SR, channels=channels, batch_size=2,
                               seed=5).double(), gen)
    weights = torch.randn(2, channels, N, generator=gen, dtype=torch.float64)
    errors = fd_errors(synth, lambda: (synth(N) * weights).sum(), gen)
    assert set(errors) == set(synth.param_specs)
    assert all(abs(fd) > 1e-6 for _, fd, _ in errors.values()), errors
    fd_close(errors)


def test_gradients_match_finite_differences_through_checkpointed_chunks(fd_errors, fd_close, monkeypatch):
    monkeypatch.setattr(ImpactSynth, "mode_chunk", 5)          # 12 modes -> 3 checkpointed chunks
    gen = torch.Generator().manual_seed(3)
    synth = _patch(ImpactSynth(n_modes=12, n_bands=2, sample_rate=SR, batch_size=1).double(), gen)
    weights = torch.randn(1, 2, 512, generator=gen, dtype=torch.float64)
    errors = fd_errors(synth, lambda: (synth(512) * weights).sum(), gen)
    fd_close({k: v for k, v in errors.items() if k.startswith("mode_")})


@pytest.mark.parametrize("raw_value", [-30.0, 30.0, "mixed"])
def test_gradients_finite_at_extremes(raw_value):
    synth = ImpactSynth(n_modes=16, n_bands=4, sample_rate=SR, batch_size=2)
    with torch.no_grad():
        for raw in synth.raw.values():
            if raw_value == "mixed":
                raw.copy_(30.0 * torch.sign(torch.randn(raw.shape, generator=torch.Generator().manual_seed(1))))
            else:
                raw.fill_(raw_value)
    out = synth(N)
    assert torch.isfinite(out).all()
    (out.square().mean() + out.abs().mean()).backward()
    for name, raw in synth.raw.items():
        assert torch.isfinite(raw.grad).all(), name


def test_gradients_finite_on_silence():
    from sds_audio.spectral import MultiResolutionSTFTDistance

    synth = ImpactSynth(n_modes=8, n_bands=2, sample_rate=SR, batch_size=1)
    controls = {k: v.detach().clone().requires_grad_(True) for k, v in synth.controls().items()}
    controls["mode_amp"] = torch.zeros_like(controls["mode_amp"], requires_grad=True)
    out = synth.render(controls, N)
    assert out.abs().max() == 0.0
    target = torch.randn(1, 2, N, generator=torch.Generator().manual_seed(0))
    MultiResolutionSTFTDistance(n_ffts=(64, 256))(out, target).sum().backward()
    for name, value in controls.items():
        assert torch.isfinite(value.grad).all(), name
    # exact silence is a stationary point of any magnitude-spectrogram loss (|X| is even in X),
    # but not of the renderer: a waveform loss still reaches the amplitudes
    controls["mode_amp"].grad = None
    (synth.render(controls, N) - target).square().mean().backward()
    assert controls["mode_amp"].grad.abs().max() > 0


def test_long_render_of_short_decays_has_finite_spectral_gradients():
    """Decays reach 0 through subnormal floats; those are flushed, so STFT-magnitude gradients stay finite."""
    from sds_audio.spectral import MultiResolutionSTFTDistance

    synth = ImpactSynth(n_modes=4, n_bands=2, sample_rate=SR, batch_size=1)
    synth.set_controls({"mode_decay_s": 0.002, "band_decay_s": 0.05, "mode_freq_hz": 500.0})
    out = synth(2 * SR)
    assert out[..., SR:].abs().max() < 1e-6 * out.abs().max()      # decayed (FFT round-off left)
    target = torch.randn(1, 2, 2 * SR, generator=torch.Generator().manual_seed(0))
    MultiResolutionSTFTDistance(n_ffts=(128, 512))(out, target).sum().backward()
    for name, raw in synth.raw.items():
        assert torch.isfinite(raw.grad).all(), name


def test_parameters_stay_in_range_after_large_adam_steps():
    gen = torch.Generator().manual_seed(0)
    synth = ImpactSynth(n_modes=8, n_bands=3, sample_rate=SR, batch_size=2).randomize_(gen)
    opt = torch.optim.Adam(synth.unconstrained_parameters(), lr=1.0)
    for _ in range(200):
        opt.zero_grad()
        out = synth(256)
        (out * torch.randn(out.shape, generator=gen)).sum().backward()
        opt.step()
    for name, value in synth.controls().items():
        assert synth.param_specs[name].contains(value), name
    assert torch.isfinite(synth(256)).all()


def test_batch_equals_separate_renders_and_select():
    synth = ImpactSynth(n_modes=16, n_bands=4, sample_rate=SR, batch_size=3, seed=9)
    synth.randomize_(torch.Generator().manual_seed(4))
    with torch.no_grad():
        together = synth(N)
        for i in range(3):
            alone = synth.select(i)
            assert alone.config() == synth.config()
            torch.testing.assert_close(alone(N), together[i:i + 1], rtol=1e-5, atol=1e-6)


def test_rerender_is_bit_identical_across_fresh_instances():
    gen_state = torch.Generator().manual_seed(7).get_state()
    renders = []
    for _ in range(2):
        synth = ImpactSynth(n_modes=32, n_bands=8, sample_rate=SR, seed=123)
        synth.randomize_(torch.Generator().set_state(gen_state))
        with torch.no_grad():
            renders.append(synth(2000))
    assert torch.equal(renders[0], renders[1])
    other = ImpactSynth(n_modes=32, n_bands=8, sample_rate=SR, seed=124)
    other.randomize_(torch.Generator().set_state(gen_state))
    with torch.no_grad():
        assert not torch.equal(other(2000), renders[0])


def test_reverb_channels_are_decorrelated():
    synth = ImpactSynth(n_modes=8, n_bands=6, sample_rate=SR, seed=1)
    with torch.no_grad():
        reverb = synth.reverb_impulse(synth.controls(), 4 * SR)[0]
    left, right = reverb[0] - reverb[0].mean(), reverb[1] - reverb[1].mean()
    corr = float((left * right).sum() / (left.norm() * right.norm()))
    assert abs(corr) < 0.1


def test_chunked_modal_sum_equals_unchunked(monkeypatch):
    synth = ImpactSynth(n_modes=40, n_bands=2, sample_rate=SR, batch_size=2).randomize_(torch.Generator().manual_seed(0))
    controls = synth.controls()
    whole = synth.object_impulse(controls, N)
    monkeypatch.setattr(ImpactSynth, "mode_chunk", 7)
    pieces = synth.object_impulse(controls, N)
    torch.testing.assert_close(pieces, whole, rtol=1e-5, atol=1e-6)
    # the checkpointed chunks give the same gradients as one chunk
    grads = []
    for chunk in (7, 64):
        monkeypatch.setattr(ImpactSynth, "mode_chunk", chunk)
        synth.zero_grad()
        synth.object_impulse(synth.controls(), N).square().sum().backward()
        grads.append(synth.raw["mode_freq_hz"].grad.clone())
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)


def test_modes_above_nyquist_are_muted():
    synth = ImpactSynth(n_modes=1, n_bands=1, sample_rate=SR)
    synth.set_controls({"mode_freq_hz": 0.6 * SR, "mode_amp": 1.0, "dry_gain": 1.0, "band_amp": 1e-4})
    with torch.no_grad():
        high = synth(N)
        synth.set_controls({"mode_freq_hz": 0.3 * SR})
        low = synth(N)
    assert high.abs().max() < 1e-6 * low.abs().max()


def test_default_patch_sounds_and_is_normalised():
    synth = ImpactSynth()
    assert synth.sample_rate == 44100 and synth.channels == 2
    with torch.no_grad():
        out = synth(synth.n_samples(1.0))
    assert out.shape == (1, 2, 44100)
    assert 0.1 < float(out.abs().max()) < 1.0


def test_large_mode_count_renders():
    synth = ImpactSynth(n_modes=2048, n_bands=4, sample_rate=SR)
    out = synth(SR // 4)
    out.square().mean().backward()
    assert torch.isfinite(synth.raw["mode_freq_hz"].grad).all()


@pytest.mark.parametrize("bad", [dict(n_modes=0), dict(n_modes=4096), dict(n_bands=0), dict(seed=-1),
                                 dict(seed=1.5)])
def test_bad_configuration_is_a_user_error(bad):
    with pytest.raises(SDSAudioError):
        ImpactSynth(**bad)


def test_reseed_toward_moves_idle_modes_onto_residual_peaks():
    synth = ImpactSynth(n_modes=6, n_bands=2, sample_rate=SR, channels=1, batch_size=2)
    hz_per_bin = SR / 1024
    # candidate 0: mode 2 sits on a target partial (bin 60); candidate 1: every mode is idle
    freqs = torch.tensor([[100.0, 150.0, 60 * hz_per_bin, 250.0, 300.0, 350.0],
                          [100.0, 150.0, 200.0, 250.0, 300.0, 350.0]])
    amps = torch.tensor([[0.5, 0.01, 0.001, 0.5, 0.002, 0.5], [0.5, 0.5, 0.5, 0.5, 0.5, 0.001]])
    synth.set_controls({"mode_freq_hz": freqs, "mode_amp": amps})
    before = {k: v.detach().clone() for k, v in synth.controls().items()}
    target = torch.zeros(513)
    target[59:62] = torch.tensor([0.2, 0.4, 0.2])             # the partial mode 2 of candidate 0 explains
    target[150:153] = torch.tensor([0.5, 1.0, 0.5])           # the largest missing partial, bin 151
    target[300:303] = torch.tensor([0.2, 0.6, 0.2])           # the next one, bin 301
    spectra = torch.zeros(2, 513)
    spectra[0, 59:62] = target[59:62]
    masks = synth.reseed_toward_(target, spectra, hz_per_bin, fraction=2 / 6)
    assert set(masks) == {"mode_freq_hz", "mode_decay_s", "mode_amp"}
    assert masks["mode_freq_hz"].sum(dim=1).tolist() == [2, 2]
    after = {k: v.detach() for k, v in synth.controls().items()}
    # candidate 0: the idle modes go, weakest first (4, then 1), to the largest then the second peak;
    # mode 2 is the weakest of all but sits on a partial, so it stays
    assert masks["mode_freq_hz"][0].nonzero().flatten().tolist() == [1, 4]
    assert float(after["mode_freq_hz"][0, 4]) == pytest.approx(151 * hz_per_bin, abs=0.01)
    assert float(after["mode_freq_hz"][0, 1]) == pytest.approx(301 * hz_per_bin, abs=0.01)
    # candidate 1: the weakest is mode 5, then the first of the equally strong ones
    assert masks["mode_freq_hz"][1].nonzero().flatten().tolist() == [0, 5]
    assert float(after["mode_freq_hz"][1, 5]) == pytest.approx(151 * hz_per_bin, abs=0.01)
    # the rest keep their values; moved modes take the candidate's median decay
    keep = ~masks["mode_freq_hz"]
    torch.testing.assert_close(after["mode_freq_hz"][keep], before["mode_freq_hz"][keep])
    torch.testing.assert_close(after["mode_decay_s"][0, 4], before["mode_decay_s"][0].median(), rtol=1e-4, atol=0)
    # nothing missing: nothing moves
    assert not any(m.any() for m in synth.reseed_toward_(target, target.expand(2, -1), hz_per_bin, 0.5).values())
    with pytest.raises(ValueError, match="spectra"):
        synth.reseed_toward_(target, torch.zeros(3, 513), hz_per_bin, 0.5)


def test_reseed_toward_moves_a_duplicate_mode_off_a_shared_partial():
    synth = ImpactSynth(n_modes=4, n_bands=1, sample_rate=SR, channels=1)
    hz_per_bin = SR / 1024
    # modes 0 and 1 both sit on the loudest partial, at bin 60 (half a bin apart); mode 1 is the weaker;
    # modes 2 and 3 sit on the partials at bins 200 and 300
    freqs = torch.tensor([60 * hz_per_bin, 60.5 * hz_per_bin, 200 * hz_per_bin, 300 * hz_per_bin])
    synth.set_controls({"mode_freq_hz": freqs, "mode_amp": torch.tensor([0.5, 0.3, 0.4, 0.4])})
    target = torch.zeros(513)
    for centre, height in ((60, 1.0), (200, 0.5), (300, 0.5), (120, 0.8)):   # bin 120: nobody's partial
        target[centre - 1:centre + 2] = torch.tensor([0.5, 1.0, 0.5]) * height
    spectra = target.clone().unsqueeze(0)
    spectra[0, 119:122] = 0.0
    masks = synth.reseed_toward_(target, spectra, hz_per_bin, fraction=1 / 4)
    # every mode sits on a partial, but mode 1 only doubles mode 0: it is the one that moves
    assert masks["mode_freq_hz"][0].nonzero().flatten().tolist() == [1]
    assert float(synth.controls()["mode_freq_hz"][0, 1]) == pytest.approx(120 * hz_per_bin, abs=0.01)
