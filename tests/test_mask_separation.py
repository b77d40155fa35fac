"""The mask method of separation (``method="mask"``, the default) against oracle priors.

With :class:`PromptOracle` the prior's rendition of a source under its prompt is the true source
(optionally leaking the noisy input), so SDS in the mask domain must move each source toward it,
while the sources always sum to the mixture.
"""

from __future__ import annotations

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.metrics import si_sdr, si_sdr_improvement
from sds_audio.sds import SDSConfig
from sds_audio.tasks.mask_separation import MaskSTFT, start_masks
from sds_audio.tasks.separate import SeparationConfig, prior_mask_split, separate

from oracle_prior import RATE
from test_separate import N, N_FFTS, PromptOracle, _band_noise, _sources, _tone


def _config(steps: int = 60, **kw) -> SeparationConfig:
    kw.setdefault("sds", SDSConfig(n_ffts=N_FFTS, guidance_scale=1.0))
    return SeparationConfig(steps=steps, rec_n_ffts=N_FFTS, mask_n_fft=256, **kw)


def _run(mixture, prior, config, prompts=("tone", "noise"), **kw):
    return separate(mixture, list(prompts), prior, config, sample_rate=kw.pop("sample_rate", RATE), progress=False,
                    **kw)


def _setup(leak: float = 0.0, n: int = N, decay_s: float | None = 0.25, max_duration_s: float = 10.0):
    s1, s2 = _sources(n, decay_s)
    prior = PromptOracle({"tone": s1, "noise": s2}, leak=leak, max_duration_s=max_duration_s)
    return (s1 + s2)[0], prior, torch.cat([s1, s2])


def test_mask_is_the_default_method():
    config = SeparationConfig()
    assert config.method == "mask" and config.init == "prior_mask" and config.mask_target == "vote_power"


@pytest.mark.parametrize("target", ["vote_power", "vote"])
def test_votes_of_clean_renditions_repair_a_poor_split(target):
    # renditions at t = 0.95 keep 5 % of the prompt's source (a poor split); at t <= 0.1, 90 % or more
    # (measured: split [0.1, 0.1] dB, 40 voting steps [11.0, 11.1] dB)
    mixture, prior, reference = _setup(leak=1.0)
    options = dict(mask_noise_levels=(0.95,), mask_draws=1, mask_t=(0.02, 0.1), mask_target=target, mask_lr=0.1)
    split = si_sdr_improvement(_run(mixture, prior, _config(steps=0, **options)).sources, reference,
                               mixture.unsqueeze(0))
    voted = si_sdr_improvement(_run(mixture, prior, _config(steps=40, **options)).sources, reference,
                               mixture.unsqueeze(0))
    assert (voted > split + 3.0).all() and voted.min() > 9.0


def test_vote_improves_on_the_split_with_an_exact_oracle():
    mixture, prior, reference = _setup()
    split = si_sdr_improvement(_run(mixture, prior, _config(steps=0)).sources, reference, mixture.unsqueeze(0))
    voted = si_sdr_improvement(_run(mixture, prior, _config(steps=40, mask_target="vote_power")).sources,
                               reference, mixture.unsqueeze(0))
    # measured: split [13.0, 13.0] dB, 40 steps [13.4, 13.2] dB
    assert (voted > split + 0.1).all()


def test_magnitude_votes_move_the_masks_to_the_renditions_magnitude_ratios():
    mixture, prior, reference = _setup()
    stft = MaskSTFT(256, N, torch.device("cpu"))
    ratio = stft.inverse(start_masks(reference, stft, exponent=1.0).unsqueeze(1) * stft(mixture).unsqueeze(0))
    split = si_sdr(_run(mixture, prior, _config(steps=0)).sources, ratio)
    voted = si_sdr(_run(mixture, prior, _config(steps=40, mask_target="vote")).sources, ratio)
    # measured: split [16.4, 14.6] dB, 40 steps [16.8, 18.1] dB from the true sources' magnitude-ratio split
    assert (voted > split).all() and float((voted - split).mean()) > 1.0


def test_rendition_gradient_improves_on_the_split_with_an_oracle():
    mixture, prior, reference = _setup()
    split = si_sdr_improvement(_run(mixture, prior, _config(steps=0)).sources, reference, mixture.unsqueeze(0))
    result = _run(mixture, prior, _config(steps=60, mask_lr=0.1, mask_target="rendition"))
    gains = si_sdr_improvement(result.sources, reference, mixture.unsqueeze(0))
    # measured: split [13.0, 13.0] dB, after 60 steps [13.8, 13.5] dB (1024-sample masks: [15.3, 14.9])
    assert (gains > split + 0.4).all() and float((gains - split).mean()) > 0.6
    # the SDS losses fall as the sources approach the renditions
    first = sum(result.history[0]["loss_sds"])
    last = sum(result.history[-1]["loss_sds"])
    assert last < 0.8 * first


@pytest.mark.parametrize("output", ["wiener", "direct"])
def test_sources_sum_to_the_mixture_exactly(output):
    mixture, prior, _ = _setup(leak=0.5)
    result = _run(mixture, prior, _config(steps=20, mask_lr=0.5, output=output))
    torch.testing.assert_close(result.sources.sum(0), mixture, rtol=0, atol=1e-5)
    assert max(h["loss_rec"] for h in result.history) < 1e-6
    assert result.history[-1]["mask_change"] > 0


def test_stereo_input_at_another_rate_sums_to_the_mixture():
    rate, n = 16000, 4800
    s1, s2 = _tone(n, 330.0, 0.25, rate), _band_noise(n, 200.0, 2500.0, rate=rate)
    from sds_audio.audio_io import resample

    prior = PromptOracle({"tone": resample(s1, rate, RATE), "noise": resample(s2, rate, RATE)})
    mono = (s1 + s2)[0, 0]
    mixture = torch.stack([mono, 0.5 * mono])
    result = _run(mixture, prior, _config(steps=20), sample_rate=rate)
    assert result.sources.shape == (2, 2, n)
    torch.testing.assert_close(result.sources.sum(0), mixture, rtol=0, atol=1e-5)
    gains = si_sdr_improvement(result.sources[:, :1], torch.cat([s1, s2]), mixture[None, :1])
    assert gains.min() > 8.0


def test_no_step_and_no_sds_keep_the_split():
    mixture, prior, _ = _setup(leak=0.5)
    config = _config(steps=0, output="direct")
    parts = prior_mask_split(mixture, ["tone", "noise"], prior, config.mask_noise_levels, config.mask_draws,
                             config.sds, torch.Generator().manual_seed(config.seed + 999), config.mask_refinements)
    torch.testing.assert_close(_run(mixture, prior, config).sources, parts, rtol=0, atol=1e-6)
    kept = _run(mixture, prior, _config(steps=5, gamma=0.0, output="direct")).sources
    torch.testing.assert_close(kept, parts, rtol=0, atol=1e-5)


def test_start_masks_rebuild_the_split():
    mixture, prior, _ = _setup()
    parts = prior_mask_split(mixture, ["tone", "noise"], prior, (0.3, 0.7), 2, SDSConfig(), torch.Generator())
    stft = MaskSTFT(256, N, torch.device("cpu"))
    masks = start_masks(parts, stft)
    torch.testing.assert_close(masks.sum(0), torch.ones_like(masks[0]))
    rebuilt = stft.inverse(masks.unsqueeze(1) * stft(mixture).unsqueeze(0))
    # the masks of a split made by masks are close to those masks: they split the mixture the same way
    gains = si_sdr_improvement(rebuilt, parts, mixture.unsqueeze(0))
    assert gains.min() > 10.0


def test_trust_region_keeps_noisy_targets_near_the_split():
    # at t 0.5-1 the leaky renditions are mostly the noisy input: they pull toward noise that is not in the
    # mixture (measured: split [9.6, 12.1] dB; no trust region [3.0, 4.5] dB; mask_trust 10 [9.2, 11.7] dB)
    mixture, prior, reference = _setup(leak=0.5)
    changes, gains = {}, {}
    for trust in (0.0, 10.0):
        result = _run(mixture, prior, _config(steps=40, mask_lr=0.3, mask_trust=trust, mask_target="vote",
                                              mask_t=(0.5, 1.0)))
        changes[trust] = result.history[-1]["mask_change"]
        gains[trust] = si_sdr_improvement(result.sources, reference, mixture.unsqueeze(0))
    assert changes[10.0] < 0.5 * changes[0.0]
    assert gains[10.0].mean() > gains[0.0].mean() + 3.0


def test_seeded_runs_are_identical_and_seeds_matter():
    mixture, prior, _ = _setup(leak=0.3)
    a = _run(mixture, prior, _config(steps=6, seed=1))
    b = _run(mixture, prior, _config(steps=6, seed=1))
    c = _run(mixture, prior, _config(steps=6, seed=2))
    assert torch.equal(a.sources, b.sources) and a.history == b.history
    assert not torch.equal(a.sources, c.sources)


def test_single_prompt_returns_the_mixture():
    mixture, prior, _ = _setup()
    result = _run(mixture, prior, _config(steps=3), prompts=("tone",))
    torch.testing.assert_close(result.sources[0], mixture, rtol=0, atol=1e-6)


def test_long_mixture_in_windows_sums_and_separates():
    n = int(2.5 * 1600)
    mixture, prior, reference = _setup(n=n, decay_s=None, max_duration_s=0.2)
    result = _run(mixture, prior, _config(steps=20))
    assert result.windows == [(0, 1600), (800, 1600), (1600, 1600), (2400, 1600)]   # default overlap: a third
    torch.testing.assert_close(result.sources.sum(0), mixture, rtol=0, atol=1e-5)
    assert si_sdr_improvement(result.sources, reference, mixture.unsqueeze(0)).min() > 8.0


def test_continued_masks_start_each_overlap_from_the_previous_window():
    n = int(2.5 * 1600)
    mixture, prior, _ = _setup(n=n, decay_s=0.1, max_duration_s=0.2)
    fresh = _run(mixture, prior, _config(steps=0, overlap_s=0.025))
    continued = _run(mixture, prior, _config(steps=0, overlap_s=0.025, continue_masks=True))
    torch.testing.assert_close(continued.sources.sum(0), mixture, rtol=0, atol=1e-5)
    inside = torch.zeros(n, dtype=torch.bool)
    inside[1200:1600] = inside[2400:2800] = True             # the overlaps of windows 0-1 and 1-2
    change = (continued.sources - fresh.sources).abs()[..., inside].max()
    assert float((continued.sources - fresh.sources)[..., ~inside].abs().max()) == 0.0
    assert float(change) > 1e-3 * float(mixture.abs().max())
    with pytest.raises(SDSAudioError, match="continue_masks"):
        SeparationConfig(continue_masks=1)


@pytest.mark.parametrize("stop_at, error, resumes_at", [(3, KeyboardInterrupt, 4), (9, KeyboardInterrupt, 10),
                                                        (9, RuntimeError, 8)])
def test_interrupted_run_resumes_bit_identically(tmp_path, stop_at, error, resumes_at):
    mixture, prior, _ = _setup(leak=0.3, n=2000, decay_s=None, max_duration_s=0.1)
    config = _config(steps=6, checkpoint_every=2, overlap_s=0.0125)
    full = _run(mixture, prior, config, checkpoint_dir=tmp_path / "a")
    assert len(full.windows) == 3

    def interrupt(step, entry):
        if step == stop_at:
            raise error

    with pytest.raises(error):
        _run(mixture, prior, config, checkpoint_dir=tmp_path / "b", on_step=interrupt)
    steps_run = []
    resumed = _run(mixture, prior, config, checkpoint_dir=tmp_path / "b", resume=True,
                   on_step=lambda step, entry: steps_run.append(step))
    assert steps_run == list(range(resumes_at, 18))
    assert torch.equal(full.sources, resumed.sources) and resumed.history == full.history
    with pytest.raises(SDSAudioError, match="another mixture, prompts or options"):
        _run(mixture, prior, _config(steps=6, checkpoint_every=2, mask_lr=0.2), checkpoint_dir=tmp_path / "b",
             resume=True)


@pytest.mark.parametrize("options, field", [
    (dict(method="masks"), "method"), (dict(mask_lr=0.0), "mask_lr"), (dict(mask_lr=float("inf")), "mask_lr"),
    (dict(mask_trust=-1.0), "mask_trust"), (dict(mask_n_fft=1000), "mask_n_fft"), (dict(mask_n_fft=8), "mask_n_fft"),
    (dict(mask_n_fft=True), "mask_n_fft"), (dict(mask_t=(0.5, 0.3)), "mask_t"), (dict(mask_t=(0.0, 0.3)), "mask_t"),
    (dict(mask_t=0.3), "mask_t"), (dict(mask_target="source"), "mask_target"), (dict(init="mixture"), "init"), (dict(init="split"), "init"),
])
def test_bad_mask_options(options, field):
    with pytest.raises(SDSAudioError, match=field):
        SeparationConfig(**options)
