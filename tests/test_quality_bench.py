"""benchmarks/quality.py: its declared prompt sets and the specificity / kept-restart bookkeeping."""

from __future__ import annotations

import pytest
import torch

from bench_loader import load_benchmark
from sds_audio.corpus.concepts import concept_by_name
from sds_audio.priors.registry import load_prior
from tiny_embedded import write_prior_dir

quality = load_benchmark("quality")


def test_the_test_set_shares_no_concept_or_seed_with_the_validation_set():
    val, test = quality.PROMPT_SETS["validation"], quality.PROMPT_SETS["test"]
    for synth in ("fm", "impact"):
        assert not set(val[synth]) & set(test[synth])
        for name in test[synth]:
            concept_by_name(name)                       # every test concept is one the priors know
    assert not set(val["seeds"]) & set(test["seeds"])
    assert quality.prompt_list(None, "test")[0] == ("fm", "vibraphone")
    assert ("dx7", "vibraphone") in quality.prompt_list(None, "test")
    assert ("fm", "kick drum, bass, reverb") in quality.prompt_list(None, "validation")


def test_a_run_is_graded_on_every_prompt_of_its_set_with_specificity(tmp_path):
    torch.manual_seed(0)
    prior = load_prior(str(write_prior_dir(tmp_path / "prior")), device="cpu")
    prompts = ["kick drum", "flute", "piano"]

    def grade(audio, sample_rate, ps):                  # a grader that only loudness moves, per prompt
        rms = audio.pow(2).mean(dim=(1, 2)).sqrt()
        return torch.stack([rms * (k + 1) for k in range(len(ps))], -1)

    def select(audio, sample_rate, prompt):             # keeps the quietest restart
        return -audio.pow(2).mean(dim=(1, 2))

    judges = {"grade": grade, "select": select, "by": "judge", "by_desc": "test", "grade_name": "test"}
    recorded = quality.run_once(prior, judges, "fm", "flute", 0, steps=2, restarts=3, duration_s=0.2)
    assert recorded["init_audio"].shape == recorded["final_audio"].shape and recorded["init_audio"].shape[0] == 3
    assert not torch.equal(recorded["init_audio"], recorded["final_audio"])
    run = quality.grade_run(recorded, grade, prompts)
    gains = torch.tensor(run["gains_all"])
    assert gains.shape == (3,)
    # own prompt is index 1: gain x2; the others x1 and x3, whose mean is x2 -> specificity 0 up to rounding
    assert run["specificity"] == pytest.approx(float(gains[1] - (gains[0] + gains[2]) / 2), abs=1e-6)
    assert run["specificity"] == pytest.approx(0.0, abs=1e-5)
    assert run["gain_mean"] == pytest.approx(float(gains[1]), abs=1e-5)
    final = torch.tensor(run["final"])
    assert run["kept_restart"] == int(final.argmin())    # the quietest final restart scores lowest here
    assert len(run["init"]) == len(run["final"]) == 3
    assert "draws_audio" not in recorded and run["init_mean"] == pytest.approx(run["start_mean"])


def test_with_a_population_the_baseline_is_the_mean_of_all_its_draws(tmp_path):
    prior = load_prior(str(write_prior_dir(tmp_path / "prior")), device="cpu")
    prompts = ["kick drum", "flute"]

    def grade(audio, sample_rate, ps):
        rms = audio.float().pow(2).mean(dim=(1, 2)).sqrt()
        return torch.stack([rms * (k + 1) for k in range(len(ps))], -1)

    judges = {"grade": grade, "select": lambda a, sr, p: torch.zeros(a.shape[0]), "by": "judge", "by_desc": "test",
              "grade_name": "test"}
    recorded = quality.run_once(prior, judges, "fm", "flute", 0, steps=1, restarts=2, duration_s=0.2, population=5)
    assert recorded["draws_audio"].shape[0] == 5 and recorded["init_audio"].shape[0] == 2
    run = quality.grade_run(recorded, grade, prompts)
    draws = grade(recorded["draws_audio"], 0, prompts)[:, 1].mean()
    assert run["init_mean"] == pytest.approx(float(draws), rel=1e-5)
    assert run["gain_mean"] == pytest.approx(run["final_mean"] - float(draws), abs=1e-6)
    assert run["start_mean"] == pytest.approx(float(grade(recorded["init_audio"], 0, prompts)[:, 1].mean()), rel=1e-5)


def test_recorded_runs_round_trip_through_the_cache(tmp_path):
    run = {"synth": "fm", "prompt": "flute", "seed": 3, "settings": {"a": 1}, "kept_restart": 1, "sample_rate": 8000,
           "init_audio": torch.randn(2, 1, 50), "final_audio": torch.randn(2, 1, 50)}
    cache = tmp_path / "runs.json"
    record = quality._save_run(cache, run)
    assert "init_audio" not in record and record["kept_restart"] == 1
    back = quality._load_run(cache, record)
    assert torch.equal(back["init_audio"], run["init_audio"]) and torch.equal(back["final_audio"], run["final_audio"])
    assert quality._load_run(cache, {**record, "seed": 4}) is None
