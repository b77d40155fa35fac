"""FMSynth: gradients vs finite differences, ranges, batching, pitch/duration, phase accuracy."""

from __future__ import annotations

import math

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.synths import FMSynth

SR = 16000
N = 1024


def _audible_patch(synth: FMSynth, gen: torch.Generator) -> FMSynth:
    """Random patch whose operators all sit well below Nyquist and are heard in a short render."""
    n, b = synth.n_operators, synth.batch_size

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(b, *shape, generator=gen, dtype=torch.float64)

    values = {
        "f0_hz": u(120, 300), "ratio": u(0.5, 4.0, n), "mod_index": u(0.2, 3.0, n, n), "level": u(0.2, 0.9, n),
        "attack_s": u(0.002, 0.03, n), "decay_s": u(0.05, 2.0, n), "sustain": u(0.1, 0.9, n),
        "pitch_env_semitones": u(2, 24), "pitch_decay_s": u(0.01, 0.2),
    }
    if synth.channels == 2:
        values["stereo_spread"] = u(0.1, 0.9)
    if synth.feedback:
        values["feedback"] = u(0.1, 0.9, n)
    if any(synth.fixed_frequency):
        values["fixed_hz"] = u(100, 2000, n)
    return synth.set_controls(values)


@pytest.mark.parametrize("kwargs", [
    dict(n_operators=4, channels=2, feedback=True),
    dict(n_operators=3, channels=1, feedback=False, fixed_frequency=[False, True, False]),
], ids=["4op-feedback-stereo", "3op-fixed-mono"])
def test_gradients_match_finite_differences(kwargs, fd_errors, fd_close):
    gen = torch.Generator().manual_seed(1)
    synth = _audible_patch(FMSynth(sample_rate=SR, batch_size=2, **kwargs).double(), gen)
    weights = torch.randn(2, synth.channels, N, generator=gen, dtype=torch.float64)
    errors = fd_errors(synth, lambda: (synth(N) * weights).sum(), gen)
    assert set(errors) == set(synth.param_specs)
    # every parameter matters in this patch (so the check is not vacuous) ...
    assert all(abs(fd) > 1e-6 for _, fd, _ in errors.values()), errors
    # ... and autograd agrees with the 4th-order central difference to 1e-6 relative
    fd_close(errors)


@pytest.mark.parametrize("raw_value", [-30.0, 30.0, "mixed"])
def test_gradients_finite_at_extremes(raw_value):
    synth = FMSynth(sample_rate=SR, batch_size=2)
    with torch.no_grad():
        for raw in synth.raw.values():
            if raw_value == "mixed":
                raw.copy_(30.0 * torch.sign(torch.randn(raw.shape, generator=torch.Generator().manual_seed(0))))
            else:
                raw.fill_(raw_value)
    out = synth(N)
    assert torch.isfinite(out).all()
    (out.square().mean() + out.abs().mean()).backward()
    for name, raw in synth.raw.items():
        assert torch.isfinite(raw.grad).all(), name


def test_gradients_finite_on_silence():
    from sds_audio.spectral import MultiResolutionSTFTDistance

    synth = FMSynth(sample_rate=SR, batch_size=2)
    target = torch.randn(1, 2, N, generator=torch.Generator().manual_seed(0))
    loss = MultiResolutionSTFTDistance(n_ffts=(64, 256))
    # levels at the bottom of their range (1e-6): practically silent, gradients finite and alive
    synth.set_controls({"level": 0.0})
    out = synth(N)
    assert out.abs().max() < 1e-5
    loss(out, target).sum().backward()
    grads = torch.cat([raw.grad.flatten() for raw in synth.raw.values()])
    assert torch.isfinite(grads).all()
    assert synth.raw["level"].grad.abs().max() > 0
    # exactly zero levels (as a preset may store): exact silence, finite gradients for every control
    controls = {k: v.detach().clone().requires_grad_(True) for k, v in synth.controls().items()}
    controls["level"] = torch.zeros_like(controls["level"], requires_grad=True)
    out = synth.render(controls, N)
    assert out.abs().max() == 0.0
    loss(out, target).sum().backward()
    for name, value in controls.items():
        assert value.grad is not None and torch.isfinite(value.grad).all(), name


def test_patch_above_nyquist_is_silent_with_finite_spectral_gradients():
    """Operators above Nyquist fade to exactly 0 (no subnormal floats to poison an STFT magnitude)."""
    from sds_audio.spectral import MultiResolutionSTFTDistance

    synth = FMSynth(n_operators=2, sample_rate=8000, batch_size=2)
    synth.set_controls({"f0_hz": 4000.0, "ratio": 16.0, "level": 1.0})
    out = synth(2000)
    assert out.abs().max() == 0.0
    target = torch.randn(1, 2, 2000, generator=torch.Generator().manual_seed(0))
    MultiResolutionSTFTDistance(n_ffts=(128, 512))(out, target).sum().backward()
    for name, raw in synth.raw.items():
        assert torch.isfinite(raw.grad).all(), name


def test_parameters_stay_in_range_after_large_adam_steps():
    gen = torch.Generator().manual_seed(0)
    synth = FMSynth(n_operators=3, sample_rate=8000, batch_size=2).randomize_(gen)
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
    synth = FMSynth(sample_rate=SR, batch_size=3).randomize_(torch.Generator().manual_seed(4))
    with torch.no_grad():
        together = synth(N)
        for i in range(3):
            alone = synth.select(i)
            assert alone.batch_size == 1 and alone.config() == synth.config()
            torch.testing.assert_close(alone(N), together[i:i + 1], rtol=0, atol=1e-6)


def test_mod_index_mask_is_exact_and_acyclic():
    synth = FMSynth(n_operators=4, batch_size=2).randomize_(torch.Generator().manual_seed(0))
    mod = synth.controls()["mod_index"]
    upper = torch.ones(4, 4, dtype=torch.bool).triu()          # j <= k: not used
    assert (mod[:, upper] == 0).all()
    assert (mod[:, ~upper] > 0).all()
    # changing a masked raw entry cannot change the sound
    with torch.no_grad():
        before = synth(512)
        synth.raw["mod_index"][:, 0, 3] += 5.0
        torch.testing.assert_close(synth(512), before, rtol=0, atol=0)


def test_default_patch_sounds_and_is_normalised():
    synth = FMSynth()
    assert synth.sample_rate == 44100 and synth.channels == 2
    with torch.no_grad():
        out = synth(synth.n_samples(0.5))
    assert out.shape == (1, 2, 22050)
    peak = float(out.abs().max())
    assert 0.5 < peak <= 1.0
    torch.testing.assert_close(out[:, 0], out[:, 1])            # the default carrier is centred


def _peak_hz(audio: torch.Tensor, sr: int) -> float:
    spectrum = torch.fft.rfft(audio.double() * torch.hann_window(audio.shape[-1], dtype=torch.float64))
    return float(spectrum.abs().argmax()) * sr / audio.shape[-1]


def test_preset_plays_at_other_pitch_and_duration():
    synth = FMSynth(n_operators=2, sample_rate=SR)
    synth.set_controls({"mod_index": 0.0, "sustain": 1.0, "f0_hz": 250.0})
    controls = {k: v.detach() for k, v in synth.controls().items()}
    with torch.no_grad():
        base = synth.render(controls, 8192)[0, 0]
        octave = synth.render(dict(controls, f0_hz=controls["f0_hz"] * 2), 8192)[0, 0]
        longer = synth.render(controls, 16384)[0, 0]
    assert abs(_peak_hz(base, SR) - 250.0) < 3.0
    assert abs(_peak_hz(octave, SR) - 500.0) < 3.0
    # a longer render starts with the shorter one: envelopes are in seconds
    torch.testing.assert_close(longer[:8192], base, rtol=0, atol=1e-6)


def test_fixed_frequency_operator_ignores_f0():
    synth = FMSynth(n_operators=1, sample_rate=SR, feedback=False, fixed_frequency=[True])
    synth.set_controls({"fixed_hz": 1000.0, "sustain": 1.0})
    controls = {k: v.detach() for k, v in synth.controls().items()}
    with torch.no_grad():
        a = synth.render(controls, 4096)
        b = synth.render(dict(controls, f0_hz=controls["f0_hz"] * 3), 4096)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert abs(_peak_hz(a[0, 0], SR) - 1000.0) < 4.0


def test_pitch_sweep_matches_integrated_frequency():
    """A 2-octave kick-style sweep: the phase is the integral of the swept frequency."""
    synth = FMSynth(n_operators=1, sample_rate=SR, channels=1, feedback=False)
    controls = {k: v.detach() for k, v in synth.controls().items()}
    controls.update(f0_hz=torch.tensor([100.0]), ratio=torch.tensor([[1.0]]), level=torch.tensor([[1.0]]),
                    attack_s=torch.tensor([[0.001]]), sustain=torch.tensor([[1.0]]),
                    pitch_env_semitones=torch.tensor([24.0]), pitch_decay_s=torch.tensor([0.3]))
    with torch.no_grad():
        out = synth.render(controls, SR)[0, 0].double()
    t = torch.arange(SR, dtype=torch.float64) / SR
    freq = 100.0 * torch.exp2(2.0 * torch.exp(-math.log(1000.0) * t / 0.3))   # 400 Hz falling to 100 Hz
    phase = 2 * math.pi * (torch.cumsum(freq, 0) - freq) / SR
    reference = torch.sin(phase)
    settled = slice(SR // 50, None)                                  # after the 1 ms attack
    assert (out[settled] - reference[settled]).abs().max() < 1e-2
    assert freq[0] == 400.0 and abs(float(freq[-1]) - 100.0) < 1e-3


def test_long_high_note_keeps_phase_in_float32():
    """10 s at 3 kHz, float32: the phase is integrated in float64 and wrapped before sin."""
    sr = 44100
    synth = FMSynth(n_operators=1, sample_rate=sr, channels=1, feedback=False)
    controls = {k: v.detach() for k, v in synth.controls().items()}
    controls.update(f0_hz=torch.tensor([3000.0]), ratio=torch.tensor([[1.0]]), level=torch.tensor([[1.0]]),
                    attack_s=torch.tensor([[0.001]]), sustain=torch.tensor([[1.0]]),
                    pitch_env_semitones=torch.tensor([0.0]))
    n = 10 * sr
    with torch.no_grad():
        out = synth.render(controls, n)[0, 0]
    t = torch.arange(n, dtype=torch.float64)
    reference = torch.sin(2 * math.pi * 3000.0 * t / sr)
    assert (out[-sr:].double() - reference[-sr:]).abs().max() < 2e-5


def test_feedback_turns_sine_into_saw_like_spectrum():
    synth = FMSynth(n_operators=1, sample_rate=SR, channels=1)
    synth.set_controls({"f0_hz": 200.0, "sustain": 1.0})
    with torch.no_grad():
        plain = synth(8192)[0, 0]
        synth.set_controls({"feedback": 0.9})
        fed = synth(8192)[0, 0]
    def harmonic(x, h):
        spec = torch.fft.rfft(x.double() * torch.hann_window(8192, dtype=torch.float64)).abs()
        k = round(200.0 * h * 8192 / SR)
        return float(spec[k - 2:k + 3].max())
    assert harmonic(plain, 2) < 1e-3 * harmonic(plain, 1)
    assert harmonic(fed, 2) > 0.1 * harmonic(fed, 1)
    assert fed.abs().max() <= 1.0 + 1e-6


@pytest.mark.parametrize("bad", [dict(n_operators=0), dict(n_operators=9), dict(n_operators=2.5),
                                 dict(n_operators=2, fixed_frequency=[True]),
                                 dict(n_operators=2, fixed_frequency=[1, 0]), dict(feedback="yes")])
def test_bad_configuration_is_a_user_error(bad):
    with pytest.raises(SDSAudioError):
        FMSynth(**bad)


def test_config_round_trip():
    synth = FMSynth(n_operators=3, sample_rate=22050, channels=1, feedback=False, fixed_frequency=[False, True, False])
    again = type(synth)(**synth.config(), batch_size=1)
    assert again.config() == synth.config()
    assert set(again.param_specs) == set(synth.param_specs)
    assert "fixed_hz" in synth.param_specs and "feedback" not in synth.param_specs
    assert "fixed_hz" not in FMSynth().param_specs


def test_time_chunked_render_matches_one_piece(monkeypatch):
    import sds_audio.synths.fm as fm_module

    synth = FMSynth(sample_rate=SR, batch_size=2).randomize_(torch.Generator().manual_seed(6))
    results = []
    for chunk in (fm_module._CHUNK_ELEMENTS, 2 * 96):              # one piece, then many checkpointed chunks
        monkeypatch.setattr(fm_module, "_CHUNK_ELEMENTS", chunk)
        synth.zero_grad()
        out = synth(N)
        (out * torch.linspace(-1, 1, N)).sum().backward()
        results.append((out.detach(), {k: v.grad.clone() for k, v in synth.raw.items()}))
    torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=1e-6)
    for name in results[0][1]:
        torch.testing.assert_close(results[1][1][name], results[0][1][name], rtol=1e-4, atol=1e-5)


def test_parameter_groups_split_frequencies_from_the_rest():
    synth = FMSynth(n_operators=2, sample_rate=8000)
    groups = synth.parameter_groups(0.1, frequency_lr_scale=0.2, frozen=("level",))
    names = {id(p): k for k, p in synth.raw.items()}
    slow = {names[id(p)] for p in groups[1]["params"]}
    fast = {names[id(p)] for p in groups[0]["params"]}
    assert slow == {k for k, spec in synth.param_specs.items() if spec.unit in ("Hz", "ratio")} >= {"f0_hz", "ratio"}
    assert fast == set(synth.param_specs) - slow - {"level"}
    assert groups[0]["lr"] == pytest.approx(0.1) and groups[1]["lr"] == pytest.approx(0.02)
    assert [g["lr_scale"] for g in groups] == [1.0, 0.2]
    with pytest.raises(ValueError, match="unknown"):
        synth.parameter_groups(0.1, frozen=("nope",))
