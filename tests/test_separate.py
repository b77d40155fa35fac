"""Prompt-guided separation (the latent method) against an oracle prior: it separates, reconstructs, windows,
resumes exactly.

The test prior is :class:`OraclePrior`'s exact framing autoencoder with a
``denoise`` that returns the encoding of the true source *for the prompt it is
conditioned on* (cropped to the window), optionally leaking a fraction of the
noisy input so that the SDS draws (and so the seed) matter.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf
import torch

from sds_audio.audio_io import resample
from sds_audio.errors import SDSAudioError
from sds_audio.metrics import si_sdr, si_sdr_improvement
from sds_audio.sds import SDSConfig
from sds_audio.spectral import MultiResolutionSTFTDistance
from sds_audio.synths.dsp import fit_length
from sds_audio.tasks.separate import (CHECKPOINT_NAME, SeparationConfig, crossfade_weights, overlap_add,
                                      plan_windows, prior_mask_split, separate, wiener_remix)

from oracle_prior import RATE, OraclePrior

N = 3200  # 0.4 s at 8 kHz
N_FFTS = (64, 128, 256)


class PromptOracle(OraclePrior):
    """``denoise`` returns ``(1 - leak t) * target(prompt) + leak t * noisy`` (target cropped to the window)."""

    def __init__(self, targets: dict[str, torch.Tensor], leak: float = 0.0, max_duration_s: float = 10.0):
        super().__init__(next(iter(targets.values())))
        self.targets = {p: self.encode(t) for p, t in targets.items()}
        self.leak, self.max_duration_s = leak, max_duration_s

    def denoise(self, noisy, t, cond, guidance_scale=7.0, steps=1):
        z = fit_length(self.targets[cond.prompt], noisy.shape[-1]).expand(noisy.shape[0], -1, -1)
        a = self.leak * t.reshape(-1, 1, 1)
        return (1 - a) * z + a * noisy


def _rms_normalise(x: torch.Tensor, rms: float = 0.15) -> torch.Tensor:
    return (x / x.square().mean().sqrt() * rms).reshape(1, 1, -1)


def _tone(n: int, f0_hz: float, decay_s: float | None, rate: int = RATE) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / rate
    x = sum(torch.sin(2 * math.pi * f0_hz * h * t + h) / h for h in (1, 2, 3, 4))
    if decay_s is not None:
        x = x * torch.exp(-t / decay_s)
    return _rms_normalise(x.float())


def _band_noise(n: int, lo_hz: float, hi_hz: float, seed: int = 0, rate: int = RATE) -> torch.Tensor:
    x = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    spec = torch.fft.rfft(x)
    f = torch.fft.rfftfreq(n, 1 / rate)
    spec[(f < lo_hz) | (f > hi_hz)] = 0
    return _rms_normalise(torch.fft.irfft(spec, n).float())


def _sources(n: int = N, decay_s: float | None = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """A struck harmonic tone (330 Hz) and noise in 200-2500 Hz: their spectra overlap."""
    return _tone(n, 330.0, decay_s), _band_noise(n, 200.0, 2500.0)


def _config(steps: int = 100, **kw) -> SeparationConfig:
    """The latent method (these tests are about it; ``tests/test_mask_separation.py`` tests the mask method)."""
    kw.setdefault("sds", SDSConfig(n_ffts=N_FFTS, guidance_scale=1.0))
    kw.setdefault("method", "latent")
    return SeparationConfig(steps=steps, rec_n_ffts=N_FFTS, **kw)


def _run(mixture, prior, config, prompts=("tone", "noise"), **kw):
    return separate(mixture, list(prompts), prior, config, sample_rate=kw.pop("sample_rate", RATE), progress=False,
                    **kw)


# --------------------------------------------------------------------------- separation quality
def test_sds_separates_and_beats_reconstruction_only():
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    prior = PromptOracle({"tone": s1, "noise": s2})
    reference = torch.cat([s1, s2])
    gains = {}
    for gamma in (SeparationConfig().gamma, 0.0):
        # the formulation: every source starts as the encoded mixture, decoded directly
        result = _run(mixture, prior, _config(steps=60, gamma=gamma, init="mixture", residual_decoding=False,
                                              output="direct"))
        assert result.sources.shape == (2, 1, N)
        # same rate and channels: the Wiener output is the masks of the direct sources applied to the mixture
        wiener = wiener_remix(result.sources, mixture, RATE)
        for output, sources in (("direct", result.sources), ("wiener", wiener)):
            gains[output, gamma > 0] = si_sdr_improvement(sources, reference, mixture.unsqueeze(0))
    # measured: wiener [12.5, 12.4] dB, direct [14.7, 13.1] dB; reconstruction only: 0.0 (both sources m / 2)
    assert gains["wiener", True].min() > 10.0
    assert gains["direct", True].min() > 10.0
    for output in ("wiener", "direct"):
        assert gains[output, False].abs().max() < 0.5
        assert (gains[output, True] - gains[output, False]).min() > 8.0


def test_default_start_separates_at_least_as_well_as_the_mixture_start():
    # a leaky oracle (its denoised output keeps half of the noisy input at t = 1), Wiener output
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    prior = PromptOracle({"tone": s1, "noise": s2}, leak=0.5)
    reference = torch.cat([s1, s2])
    assert (SeparationConfig().init, SeparationConfig().residual_decoding) == ("prior_mask", True)
    default = _run(mixture, prior, _config(steps=60))
    mixture_start = _run(mixture, prior, _config(steps=60, init="mixture", residual_decoding=False))
    gains = si_sdr_improvement(default.sources, reference, mixture.unsqueeze(0))
    baseline = si_sdr_improvement(mixture_start.sources, reference, mixture.unsqueeze(0))
    # measured: default [8.1, 9.9] dB, mixture start [7.3, 9.2] dB (the prior-mask split alone: [9.6, 12.1])
    assert gains.min() > 7.0
    assert gains.mean() > baseline.mean()


def _leaky_oracle_gains(**config_kw) -> torch.Tensor:
    """SI-SDRi of the two sources after 60 steps on the leaky oracle (leak 0.5), Wiener output."""
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    prior = PromptOracle({"tone": s1, "noise": s2}, leak=0.5)
    result = _run(mixture, prior, _config(steps=60, **config_kw))
    return si_sdr_improvement(result.sources, torch.cat([s1, s2]), mixture.unsqueeze(0))


def test_cosine_lr_schedule_settles_instead_of_jittering():
    gains = {schedule: _leaky_oracle_gains(lr_schedule=schedule) for schedule in ("constant", "cosine")}
    # measured: constant [8.1, 9.9] dB, cosine [10.3, 11.4] dB (the prior-mask split alone: [9.6, 12.1])
    assert gains["cosine"].min() > 9.5
    assert gains["cosine"].mean() > gains["constant"].mean() + 1.0


def test_mixture_split_sds_targets_stay_inside_the_mixture():
    gains = {target: _leaky_oracle_gains(sds_target=target) for target in ("source", "mixture_split")}
    # the leaky renditions carry noise that is not in the mixture; their Wiener split of the mixture
    # does not. Measured: source [8.1, 9.9] dB, mixture_split [8.9, 10.4] dB
    assert gains["mixture_split"].min() > 8.5
    assert gains["mixture_split"].mean() > gains["source"].mean() + 0.4


def test_judge_scores_sources_and_mixture():
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    prior = PromptOracle({"tone": s1, "noise": s2})
    distance = MultiResolutionSTFTDistance(N_FFTS)
    truth = {"tone": s1, "noise": s2}
    calls = []

    def judge(audio, sample_rate, prompt):
        calls.append((tuple(audio.shape), sample_rate, prompt))
        return -distance(audio, truth[prompt])

    result = _run(mixture, prior, _config(steps=60), judge=judge)
    assert len(result.judge_scores) == len(result.judge_mixture) == 2
    assert calls[0] == ((1, 1, N), RATE, "tone")
    # every separated source is closer to its own source than the mixture is
    # (measured: -0.55 vs -3.67 for the tone, -0.25 vs -0.44 for the noise)
    for separated, unseparated in zip(result.judge_scores, result.judge_mixture):
        assert separated > unseparated + 0.1


# --------------------------------------------------------------------------- reconstruction
def test_sum_of_sources_reconstructs_the_mixture():
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    prior = PromptOracle({"tone": s1, "noise": s2})
    # the unscaled start sums to 2 m: the reconstruction loss must bring the sum back to m
    direct = _run(mixture, prior, _config(steps=80, gamma=0.0, output="direct", init="mixture"))
    rec = torch.tensor([h["loss_rec"] for h in direct.history])
    assert rec[-5:].mean() < 0.1 * rec[:5].mean()
    assert all(h["loss_sds"] == [None, None] for h in direct.history)
    total = direct.sources.sum(0, keepdim=True)
    assert float(si_sdr(total, mixture.unsqueeze(0))) > 25.0     # measured 29 dB
    assert float(total.square().mean() / mixture.square().mean()) == pytest.approx(1.0, abs=0.05)
    # the Wiener output sums to the mixture exactly, and is the masks of the direct sources
    wiener = _run(mixture, prior, _config(steps=10))
    torch.testing.assert_close(wiener.sources.sum(0), mixture, atol=1e-5, rtol=0)
    direct10 = _run(mixture, prior, _config(steps=10, output="direct"))
    torch.testing.assert_close(wiener.sources, wiener_remix(direct10.sources, mixture, RATE))
    # the split start sums to m from the first step
    split = _run(mixture, prior, _config(steps=5, gamma=0.0, init="split", output="direct"))
    assert split.history[0]["loss_rec"] < 1e-3


# --------------------------------------------------------------------------- windows
@pytest.mark.parametrize("edge_fraction", [0.0, 0.3])
@pytest.mark.parametrize("n_samples, window, overlap", [(2500, 1000, 125), (1000, 1000, 125), (999, 1000, 100),
                                                        (10_007, 1024, 512), (5000, 1000, 0), (1300, 1000, 500),
                                                        (1600, 1000, 500)])
def test_crossfade_weights_sum_to_one_and_rebuild_the_mixture(n_samples, window, overlap, edge_fraction):
    windows = plan_windows(n_samples, window, overlap)
    assert windows[0][0] == 0 and windows[-1][0] + windows[-1][1] == n_samples
    for (a, la), (b, _) in zip(windows, windows[1:]):
        assert a + la - b >= overlap                         # consecutive windows overlap by at least `overlap`
    weights = crossfade_weights(windows, n_samples, edge_fraction)
    ones = [torch.ones(length, dtype=torch.float64) for _, length in windows]
    torch.testing.assert_close(overlap_add(ones, windows, weights, n_samples),
                               torch.ones(n_samples, dtype=torch.float64), atol=1e-12, rtol=0)
    mixture = torch.randn(2, n_samples, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    chunks = [mixture[:, s:s + length] for s, length in windows]
    torch.testing.assert_close(overlap_add(chunks, windows, weights, n_samples), mixture, atol=1e-12, rtol=0)
    for w in weights:
        assert float(w.max()) <= 1.0
    overlapping = any(a + la > b for (a, la), (b, _) in zip(windows, windows[1:]))
    for w in weights:                                        # with an edge, each overlapping window has zeros
        assert float(w.min()) > 0 if edge_fraction == 0 or not overlapping else float(w.min()) == 0.0


def test_crossfade_is_linear_across_an_overlap():
    windows = plan_windows(2500, 1000, 200)
    assert windows == [(0, 1000), (750, 1000), (1500, 1000)]
    weights = crossfade_weights(windows, 2500)
    down = weights[0][750:]
    assert torch.allclose(down[1:] - down[:-1], torch.full((249,), -1 / 250, dtype=torch.float64))
    assert float(weights[0][:750].min()) == 1.0


def test_crossfade_edge_keeps_each_window_edge_out_of_the_mix():
    windows = plan_windows(2500, 1000, 200)                 # overlaps of 250 samples: 750-1000, 1500-1750
    weights = crossfade_weights(windows, 2500, edge_fraction=0.2)
    # the outer 50 samples at either end of an overlap belong to the window that does not end there
    assert float(weights[1][:50].abs().max()) == 0.0 and float(weights[0][750:800].min()) == 1.0
    assert float(weights[0][950:].abs().max()) == 0.0 and float(weights[1][200:250].min()) == 1.0
    # and across the middle 150 samples the earlier window ramps down linearly
    down = weights[0][800:950]
    assert torch.allclose(down[1:] - down[:-1], torch.full((149,), -1 / 150, dtype=torch.float64))
    assert float(down[0]) == pytest.approx(1 - 0.5 / 150) and float(down[-1]) == pytest.approx(0.5 / 150)
    with pytest.raises(ValueError, match="edge_fraction"):
        crossfade_weights(windows, 2500, edge_fraction=0.5)


def test_long_mixture_is_separated_in_windows():
    n = int(2.5 * 1600)                                     # 2.5 windows of 0.2 s
    s1, s2 = _sources(n, decay_s=None)                      # stationary, so every window has the same targets
    mixture = (s1 + s2)[0]
    prior = PromptOracle({"tone": s1, "noise": s2}, max_duration_s=0.2)
    seen = []
    result = _run(mixture, prior, _config(steps=50, output="direct", overlap_s=0.025),
                  on_step=lambda i, e: seen.append(i))
    assert result.windows == [(0, 1600), (1200, 1600), (2400, 1600)]
    assert result.sources.shape == (2, 1, n)
    assert seen == list(range(150))
    assert [h["window"] for h in result.history] == [0] * 50 + [1] * 50 + [2] * 50
    gain = si_sdr_improvement(result.sources, torch.cat([s1, s2]), mixture.unsqueeze(0))
    assert gain.min() > 7.0                                 # measured [10.0, 9.0] dB
    assert float(si_sdr(result.sources.sum(0, keepdim=True), mixture.unsqueeze(0))) > 20.0   # measured 24.8 dB
    with pytest.raises(SDSAudioError, match="longer than the prior's maximum"):
        _run(mixture, prior, _config(steps=1, window_s=0.5))


# --------------------------------------------------------------------------- rates and channels
def test_stereo_16k_input_to_mono_8k_prior():
    rate = 16000
    n = 4800
    s1, s2 = _tone(n, 330.0, 0.25, rate), _band_noise(n, 200.0, 2500.0, rate=rate)
    mono = (s1 + s2)[0, 0]
    mixture = torch.stack([mono, 0.5 * mono])               # right channel at half the level
    prior8 = PromptOracle({"tone": resample(s1, rate, RATE), "noise": resample(s2, rate, RATE)})
    wiener = _run(mixture, prior8, _config(steps=30), sample_rate=rate)
    assert wiener.sample_rate == rate and wiener.sources.shape == (2, 2, n)
    torch.testing.assert_close(wiener.sources.sum(0), mixture, atol=1e-5, rtol=0)
    torch.testing.assert_close(wiener.sources[:, 1], 0.5 * wiener.sources[:, 0], atol=1e-6, rtol=0)
    direct = _run(mixture.unsqueeze(0), prior8, _config(steps=30, output="direct"), sample_rate=rate)
    assert direct.sources.shape == (2, 2, n)
    torch.testing.assert_close(direct.sources[:, 0], direct.sources[:, 1])   # a mono prior's sources, duplicated
    gain = si_sdr_improvement(wiener.sources[:, :1], torch.cat([s1, s2]), mixture[None, :1])
    assert gain.min() > 8.0                                 # measured [11.6, 11.0] dB


# --------------------------------------------------------------------------- determinism and resume
def _leaky_setup():
    n = int(2.5 * 800)
    s1, s2 = _sources(n, decay_s=None)
    prior = PromptOracle({"tone": s1, "noise": s2}, leak=0.3, max_duration_s=0.1)
    return (s1 + s2)[0], prior


def test_seeded_runs_are_identical_and_seeds_matter():
    mixture, prior = _leaky_setup()
    a = _run(mixture, prior, _config(steps=6, seed=1))
    b = _run(mixture, prior, _config(steps=6, seed=1))
    c = _run(mixture, prior, _config(steps=6, seed=2))
    assert torch.equal(a.sources, b.sources) and a.history == b.history
    assert not torch.equal(a.sources, c.sources)


@pytest.mark.parametrize("stop_at, error, resumes_at", [
    (3, KeyboardInterrupt, 4),      # mid first window (Ctrl-C checkpoint)
    (5, KeyboardInterrupt, 6),      # last step of the first window, before its sources are kept
    (9, KeyboardInterrupt, 10),     # mid second window
    (17, KeyboardInterrupt, 18),    # last step of the last window: nothing left to run
    (9, RuntimeError, 8),           # a crash: no Ctrl-C checkpoint, the periodic one (window 1, step 2) is used
])
def test_interrupted_run_resumes_bit_identically(tmp_path, stop_at, error, resumes_at):
    mixture, prior = _leaky_setup()
    config = _config(steps=6, checkpoint_every=2, overlap_s=0.0125)
    full = _run(mixture, prior, config, checkpoint_dir=tmp_path / "a")
    assert len(full.windows) == 3

    def interrupt(step, entry):
        if step == stop_at:
            raise error

    with pytest.raises(error):
        _run(mixture, prior, config, checkpoint_dir=tmp_path / "b", on_step=interrupt)
    assert (tmp_path / "b" / CHECKPOINT_NAME).is_file()
    steps_run = []
    resumed = _run(mixture, prior, config, checkpoint_dir=tmp_path / "b", resume=True,
                   on_step=lambda step, entry: steps_run.append(step))
    assert steps_run == list(range(resumes_at, 18))
    assert torch.equal(full.sources, resumed.sources)
    assert resumed.history == full.history
    with pytest.raises(SDSAudioError, match="another mixture, prompts or options"):
        _run(mixture, prior, config, prompts=("noise", "tone"), checkpoint_dir=tmp_path / "b", resume=True)
    with pytest.raises(SDSAudioError, match="another mixture, prompts or options"):
        _run(mixture * 0.5, prior, config, checkpoint_dir=tmp_path / "b", resume=True)
    with pytest.raises(SDSAudioError, match="nothing to resume"):
        _run(mixture, prior, config, checkpoint_dir=tmp_path / "c", resume=True)


def test_save_writes_one_wav_per_source(tmp_path):
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    result = _run(mixture, PromptOracle({"tone": s1, "noise": s2}), _config(steps=3), prompts=("tone", "noise"))
    paths = result.save(tmp_path / "out")
    assert [p.name for p in paths] == ["00_tone.wav", "01_noise.wav"]
    for k, path in enumerate(paths):
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
        assert rate == RATE and data.shape == (N, 1)
        np.testing.assert_allclose(data[:, 0], result.sources[k, 0].numpy(), atol=2e-6)


# --------------------------------------------------------------------------- bad input
def _bad_cases():
    good = 0.3 * torch.sin(torch.arange(N) / 5.0).reshape(1, -1)
    nan = good.clone()
    nan[0, 10] = float("nan")
    inf = good.clone()
    inf[0, 10] = float("inf")
    clipped = good.clone()
    clipped[0, : N // 50] = 1.0                              # 2 % at full scale
    return [
        (good, [], RATE, "no prompts"),
        (good, ["tone", "  "], RATE, "prompt 2 is empty"),
        (good, "tone", RATE, "list with one prompt per source"),
        (nan, ["tone"], RATE, "NaN or infinite"),
        (inf, ["tone"], RATE, "NaN or infinite"),
        (torch.zeros(1, N), ["tone"], RATE, "silent"),
        (clipped, ["tone"], RATE, "clipped"),
        (good[0], ["tone"], RATE, "shape"),
        (good.reshape(1, 1, 1, -1), ["tone"], RATE, "shape"),
        (good.expand(2, 1, -1), ["tone"], RATE, "shape"),
        (torch.zeros(1, 0), ["tone"], RATE, "at least"),
        (good[:, :100], ["tone"], RATE, "at least"),
        (good.numpy(), ["tone"], RATE, "torch tensor"),
        ((good * 1000).long(), ["tone"], RATE, "float"),
        (good, ["tone"], 0, "sample_rate"),
        (good, ["tone"], -8000, "sample_rate"),
        (good, ["tone"], 8000.5, "sample_rate"),
    ]


@pytest.mark.parametrize("mixture, prompts, rate, message", _bad_cases())
def test_bad_input_raises_a_clear_error(mixture, prompts, rate, message):
    prior = PromptOracle({"tone": torch.zeros(1, 1, N)})
    with pytest.raises(SDSAudioError, match=message):
        separate(mixture, prompts, prior, _config(steps=1), sample_rate=rate, progress=False)


def test_a_few_full_scale_samples_are_accepted():
    s1, s2 = _sources()
    mixture = (s1 + s2)[0].clone()
    mixture[0, : N // 200] = 1.0                            # 0.5 % at full scale: proceeds
    result = _run(mixture, PromptOracle({"tone": s1, "noise": s2}), _config(steps=1))
    assert result.sources.shape == (2, 1, N) and bool(torch.isfinite(result.sources).all())


@pytest.mark.parametrize("options, field", [
    (dict(steps=-1), "steps"), (dict(steps=1.5), "steps"), (dict(lr=0.0), "lr"), (dict(gamma=-1.0), "gamma"), (dict(gamma=float("nan")), "gamma"),
    (dict(init="zeros"), "init"), (dict(output="mask"), "output"), (dict(rec_n_ffts=()), "rec_n_ffts"),
    (dict(window_s=0.0), "window_s"), (dict(window_s=1.0, overlap_s=0.6), "overlap_s"),
    (dict(overlap_s=-1.0), "overlap_s"), (dict(latent_range=0.0), "latent_range"),
    (dict(crossfade_edge=0.5), "crossfade_edge"), (dict(crossfade_edge=-0.1), "crossfade_edge"),
    (dict(checkpoint_every=-1), "checkpoint_every"), (dict(rec_waveform_weight=-1.0), "rec_waveform_weight"),
])
def test_bad_options(options, field):
    with pytest.raises(SDSAudioError, match=field):
        SeparationConfig(**options)


# --------------------------------------------------------------------------- prior-mask initialisation
def test_prior_mask_split_sums_to_the_mixture_and_separates_with_an_oracle():
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    prior = PromptOracle({"tone": s1, "noise": s2})
    parts = prior_mask_split(mixture, ["tone", "noise"], prior, (0.3, 0.7), 2, SDSConfig(), torch.Generator())
    assert parts.shape == (2, 1, N)
    assert torch.allclose(parts.sum(0), mixture, atol=1e-5)
    gains = si_sdr_improvement(parts, torch.cat([s1, s2]), mixture.unsqueeze(0))
    # the oracle's renditions are the true sources: these are their Wiener masks on the mixture
    assert gains.min() > 8.0
    # swapping the prompts swaps the parts
    swapped = prior_mask_split(mixture, ["noise", "tone"], prior, (0.3, 0.7), 2, SDSConfig(), torch.Generator())
    assert torch.allclose(swapped.flip(0), parts, atol=1e-6)


def test_prior_mask_refinements_purify_renditions_that_leak_their_input():
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    reference = torch.cat([s1, s2])
    # at t = 0.05 each rendition is 0.2 x the prompt's source + 0.8 x what it was rendered from
    prior = PromptOracle({"tone": s1, "noise": s2}, leak=16.0)
    gains = []
    for refinements in (0, 1, 2):
        parts = prior_mask_split(mixture, ["tone", "noise"], prior, (0.05,), 1, SDSConfig(),
                                 torch.Generator().manual_seed(0), refinements)
        torch.testing.assert_close(parts.sum(0), mixture, rtol=0, atol=1e-5)
        gains.append(si_sdr_improvement(parts, reference, mixture.unsqueeze(0)))
    # from the mixture the renditions hold most of both sources; from the parts, mostly their own
    assert gains[0].max() < 5.0
    assert (gains[1] > gains[0] + 4.0).all() and (gains[2] > gains[1] + 1.0).all()


def test_prior_mask_init_starts_separated_and_reconstruction_only_keeps_it():
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    prior = PromptOracle({"tone": s1, "noise": s2}, leak=0.5)
    reference = torch.cat([s1, s2])
    gains = {}
    for init in ("mixture", "prior_mask"):
        result = _run(mixture, prior, _config(steps=20, gamma=0.0, init=init))
        gains[init] = si_sdr_improvement(result.sources, reference, mixture.unsqueeze(0))
    assert gains["mixture"].abs().max() < 0.5          # nothing tells identical starts apart
    assert gains["prior_mask"].min() > 5.0


def test_zero_steps_return_the_start_itself():
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    prior = PromptOracle({"tone": s1, "noise": s2}, leak=0.5)
    config = _config(steps=0, gamma=0.0, init="prior_mask", output="direct")
    result = _run(mixture, prior, config)
    assert result.history == []
    # one window: the sources are the prior-mask split of it, untouched by the codec
    generator = torch.Generator().manual_seed(config.seed + 999)
    parts = prior_mask_split(mixture, ["tone", "noise"], prior, config.mask_noise_levels, config.mask_draws,
                             config.sds, generator, config.mask_refinements)
    assert len(result.windows) == 1
    torch.testing.assert_close(result.sources, parts, rtol=0, atol=1e-6)
    # the Wiener output keeps that split (no second mask) and shares what it leaves over equally
    wiener = _run(mixture, prior, _config(steps=0, gamma=0.0, init="prior_mask", output="wiener"))
    torch.testing.assert_close(wiener.sources.sum(dim=0), mixture, rtol=0, atol=1e-5)
    torch.testing.assert_close(wiener.sources, parts + (mixture - parts.sum(dim=0)) / 2, rtol=0, atol=1e-5)
    # the mixture start with no step is an equal split: no separation at all
    equal = _run(mixture, prior, _config(steps=0, gamma=0.0, init="mixture"))
    gains = si_sdr_improvement(equal.sources, torch.cat([s1, s2]), mixture.unsqueeze(0))
    assert gains.abs().max() < 1e-3


class LossyCodecOracle(PromptOracle):
    """A codec that loses a fifth of the level: ``decode(encode(x)) = 0.8 x``."""

    def decode(self, latents):
        return 0.8 * super().decode(latents)


def test_residual_decoding_keeps_the_start_whole_through_a_lossy_codec():
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    prior = LossyCodecOracle({"tone": s1, "noise": s2}, leak=0.5)
    options = dict(lr=1e-9, gamma=0.0, init="prior_mask", output="direct")
    start = _run(mixture, prior, _config(steps=0, **options)).sources
    residual = _run(mixture, prior, _config(steps=1, residual_decoding=True, **options))
    direct = _run(mixture, prior, _config(steps=1, residual_decoding=False, **options))
    torch.testing.assert_close(residual.sources, start, rtol=0, atol=1e-5)
    torch.testing.assert_close(direct.sources, 0.8 * start, rtol=0, atol=1e-5)
    # the split sums to the mixture, so the reconstruction loss starts near 0 only when decoded residually
    assert residual.history[0]["loss_rec"] < 1e-3 * direct.history[0]["loss_rec"]


def test_residual_decoding_still_separates_with_sds():
    s1, s2 = _sources()
    mixture = (s1 + s2)[0]
    prior = LossyCodecOracle({"tone": s1, "noise": s2})
    result = _run(mixture, prior, _config(steps=60, gamma=SeparationConfig().gamma, residual_decoding=True,
                                          output="direct"))
    gains = si_sdr_improvement(result.sources, torch.cat([s1, s2]), mixture.unsqueeze(0))
    assert gains.min() > 8.0  # measured [15.2, 12.0] dB (decoded directly: [15.3, 12.0])


@pytest.mark.parametrize("options, field", [
    (dict(init="prior_mask", mask_noise_levels=()), "mask_noise_levels"),
    (dict(mask_noise_levels=(0.0,)), "mask_noise_levels"), (dict(mask_noise_levels=(1.5,)), "mask_noise_levels"),
    (dict(mask_draws=0), "mask_draws"), (dict(mask_draws=1.5), "mask_draws"),
    (dict(mask_refinements=-1), "mask_refinements"), (dict(mask_refinements=True), "mask_refinements"),
    (dict(lr_schedule="linear"), "lr_schedule"), (dict(sds_target="mixture"), "sds_target"),
    (dict(residual_decoding=1), "residual_decoding"),
])
def test_bad_mask_options(options, field):
    with pytest.raises(SDSAudioError, match=field):
        SeparationConfig(**options)
