"""The population stage: structured draws, the prior's scores, and which candidates the task keeps."""

from __future__ import annotations

import pytest
import torch
from oracle_prior import RATE, OraclePrior

from sds_audio.errors import SDSAudioError
from sds_audio.sds import SDSConfig, SDSObjective
from sds_audio.synths import FMSynth
from sds_audio.synths.dx7 import DX7Synth
from sds_audio.tasks.population import PopulationConfig, score_population, select_population
from sds_audio.tasks.synthesize import SynthesisConfig, population_start, synthesize

SECONDS = 0.25
N = int(RATE * SECONDS)


class GuidedOracle(OraclePrior):
    """The oracle's target under guidance > 0; silence for the unconditional rendition (guidance 0)."""

    def denoise(self, noisy, t, cond, guidance_scale=7.0, steps=1):
        out = super().denoise(noisy, t, cond, guidance_scale, steps)
        return out if guidance_scale > 0 else torch.zeros_like(out)


def _population(size: int, seed: int) -> FMSynth:
    return FMSynth(n_operators=3, sample_rate=RATE, channels=1, batch_size=size).propose_(
        torch.Generator().manual_seed(seed))


def _oracle_of_draw(index: int, seed: int = 5) -> tuple[FMSynth, GuidedOracle, FMSynth]:
    """A 10-draw population, an oracle prior whose target is draw ``index``, and a 3-operator synth to run."""
    population = _population(10, seed)
    prior = GuidedOracle(population.select(index)(N).detach())
    return population, prior, FMSynth(n_operators=3, sample_rate=RATE, channels=1)


def test_fm_proposals_are_structured_patches():
    synth = _population(256, 0)
    c = synth.controls()
    ratio = c["ratio"].detach()
    assert torch.allclose(ratio[:, 0], torch.ones(256), rtol=1e-4)
    lattice = torch.tensor(FMSynth.HARMONIC_RATIOS)
    on_lattice = ((ratio[:, 1:, None] / lattice).log().abs() < 1e-4).any(-1)
    assert 0.6 < on_lattice.float().mean() < 0.9              # HARMONIC_CHANCE 0.75, the rest anywhere
    assert torch.all(c["level"][:, 0] >= 0.4)                 # operator 0 always sounds
    quiet = (c["level"][:, 1:] - FMSynth.QUIET).abs() < 1e-4
    assert 0.5 < quiet.float().mean() < 0.8                   # CARRIER_CHANCE 0.35
    assert torch.all(c["mod_index"].triu() == 0)              # only j > k paths
    assert synth(N).isfinite().all()


def test_gather_keeps_candidates_and_dx7_algorithms():
    synth = _population(6, 1)
    picked = synth.gather([4, 1])
    for name in synth.param_specs:
        assert torch.equal(picked.raw[name], synth.raw[name][[4, 1]])
    dx7 = DX7Synth(algorithm=[3, 7, 11], sample_rate=RATE, channels=1, batch_size=6)
    kept = dx7.gather([5, 1])
    assert [kept.algorithm_of(i) for i in range(2)] == [11, 7]
    assert dx7.select(2).algorithm == 11
    with pytest.raises(ValueError):
        synth.gather([6])


def test_the_candidate_the_prior_renders_back_scores_best():
    population = _population(12, 3)
    target = population.select(7)(N).detach()
    prior = GuidedOracle(target)
    config = SDSConfig()
    objective = SDSObjective(prior, "a bell", config, seconds=SECONDS)
    cond = objective.conditioning(SECONDS)
    plain = score_population(population, N, prior, cond, 5.0, PopulationConfig(size=12, contrast=0.0),
                             objective.emphasis, torch.Generator().manual_seed(0))
    assert int(plain.argmin()) == 7 and float(plain[7]) == pytest.approx(0.0, abs=1e-6)
    contrasted = score_population(population, N, prior, cond, 5.0, PopulationConfig(size=12, contrast=0.5),
                                  objective.emphasis, torch.Generator().manual_seed(0))
    unconditional = score_population(population, N, prior, cond, 5.0, PopulationConfig(size=12, contrast=1.0),
                                     objective.emphasis, torch.Generator().manual_seed(0))
    # d_c - c d_u is linear in c: the three runs share their draws
    d_u = plain - unconditional
    assert torch.allclose(contrasted, plain - 0.5 * d_u, atol=1e-5)
    assert torch.all(d_u > 0)                                   # every candidate differs from silence


def test_select_population_orders_and_refuses_too_few():
    scores = torch.tensor([0.3, -1.0, 0.3, 2.0, -0.5])
    assert select_population(scores, 3) == [1, 4, 0]
    with pytest.raises(SDSAudioError):
        select_population(scores, 6)


def test_synthesize_starts_from_the_best_candidates_and_resumes(tmp_path):
    population, prior, synth = _oracle_of_draw(2)
    config = SynthesisConfig(steps=4, restarts=3, duration_s=SECONDS, seed=5, judge_every=0, checkpoint_every=2,
                             sds=SDSConfig(denoise_steps=1, guidance_scale=5.0),
                             population=PopulationConfig(size=10, contrast=0.0))
    objective = SDSObjective(prior, "a bell", config.sds, seconds=SECONDS)
    kept, scores, indices = population_start(synth, N, prior, objective, config, progress=False)
    assert indices[0] == 2
    assert kept.batch_size == 3 and scores == sorted(scores)
    for name in kept.param_specs:                               # best first: the candidate it renders back
        assert torch.equal(kept.raw[name][0], population.raw[name][2])

    result = synthesize(synth, "a bell", prior, config, progress=False, checkpoint_dir=tmp_path / "a")
    assert result.population_scores == pytest.approx(scores) and result.population_kept == indices

    def stop(step, info):
        if step == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        synthesize(synth, "a bell", prior, config, progress=False, checkpoint_dir=tmp_path / "b", on_step=stop)
    resumed = synthesize(synth, "a bell", prior, config, progress=False, checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.population_scores == pytest.approx(scores)
    for name in result.synth.param_specs:
        assert torch.equal(resumed.synth.raw[name], result.synth.raw[name])


def test_bad_population_options():
    with pytest.raises(SDSAudioError):
        SynthesisConfig(restarts=4, population=PopulationConfig(size=2))
    with pytest.raises(SDSAudioError):
        PopulationConfig(size=-1)
    with pytest.raises(SDSAudioError):
        PopulationConfig(t_levels=(0.0,))
    with pytest.raises(SDSAudioError):
        PopulationConfig(contrast=-1.0)


def test_keep_best_returns_each_restart_to_its_best_scored_state(tmp_path):
    population, prior, synth = _oracle_of_draw(2)
    config = SynthesisConfig(steps=6, restarts=2, duration_s=SECONDS, seed=5, judge_every=0, checkpoint_every=2,
                             lr=0.2, sds=SDSConfig(denoise_steps=1, guidance_scale=5.0), keep_best_every=2,
                             population=PopulationConfig(size=10, contrast=0.0))
    result = synthesize(synth, "a bell", prior, config, progress=False, checkpoint_dir=tmp_path / "a")
    # restart 0 starts exactly at the target (score 0): every step can only move it away, so it is kept
    assert result.best_steps[0] == 0
    for name in result.synth.param_specs:
        assert torch.equal(result.synth.raw[name][0], population.raw[name][2])
    assert [h["step"] for h in result.history if "prior_score" in h] == [0, 2, 4]
    assert result.best_steps[1] in (0, 2, 4, 6)

    def stop(step, info):
        if step == 3:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        synthesize(synth, "a bell", prior, config, progress=False, checkpoint_dir=tmp_path / "b", on_step=stop)
    resumed = synthesize(synth, "a bell", prior, config, progress=False, checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.best_steps == result.best_steps
    assert [h.get("prior_score") for h in resumed.history] == [h.get("prior_score") for h in result.history]
    for name in result.synth.param_specs:
        assert torch.equal(resumed.synth.raw[name], result.synth.raw[name])
