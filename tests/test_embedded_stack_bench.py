"""Smoke and consistency tests of benchmarks/embedded_stack.py on a tiny corpus with tiny random models.

The numbers a random stack produces mean nothing; these tests check the
benchmark's plumbing against oracles: its clip classification agrees with
``evaluate_judge``, a lossless codec scores a perfect reconstruction, batched
generation reproduces ``sds_audio.flow.generate`` row by row, and a missing
weights file ends the run with one line naming it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.judge import JudgeConfig, JudgeModel, evaluate_judge, save_judge
from bench_loader import load_benchmark  # tests/ is on pytest's pythonpath
from tiny_corpus import write_corpus
from tiny_embedded import build_parts, write_prior_dir

SR = 22050
TINY_JUDGE = JudgeConfig(n_fft=512, hop_length=128, n_mels=32, channels=(8, 16), head_dim=32, embed_dim=16,
                         segment_s=0.5, dropout=0.0)
CONCEPTS = [
    {"concept": "sine", "family": "tone", "prompt": "a sine tone",
     "paraphrases": ["a pure whistling tone", "a clean sinusoidal beep"]},
    {"concept": "noise", "family": "noise", "prompt": "white noise", "paraphrases": ["hissing static"]},
    {"concept": "click", "family": "impact", "prompt": "a short click", "paraphrases": ["a tiny tick"]},
]
N_TRAIN, N_HELDOUT = 3, 2


bench_mod = load_benchmark("embedded_stack")


def _clip(concept: str, rng: np.random.Generator) -> np.ndarray:
    duration = float(rng.uniform(0.3, 0.7))
    t = np.arange(int(duration * SR)) / SR
    env = np.exp(-t / (0.3 * duration))
    if concept == "sine":
        return 0.5 * np.sin(2 * np.pi * rng.uniform(200, 800) * t) * env
    if concept == "noise":
        return 0.3 * rng.standard_normal(t.shape[0]) * env
    return 0.8 * rng.standard_normal(t.shape[0]) * np.exp(-t / 0.005)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    clips = ((f"{c['concept']}_{i}", c["concept"], f"{c['prompt']} number {i}",
              "train" if i < N_TRAIN else "heldout", _clip(c["concept"], rng))
             for c in CONCEPTS for i in range(N_TRAIN + N_HELDOUT))
    return write_corpus(tmp_path_factory.mktemp("stack_corpus"), clips, CONCEPTS, SR)


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> Path:
    folder = write_prior_dir(tmp_path_factory.mktemp("stack_assets"))
    torch.manual_seed(0)
    save_judge(JudgeModel(TINY_JUDGE).eval(), folder / "judge.safetensors", dtype=torch.float32)
    return folder


@pytest.fixture(scope="module")
def text_encoder():
    from sds_audio.text import TextEncoder

    return TextEncoder()


@pytest.fixture(scope="module")
def judge(assets, text_encoder):
    from sds_audio.judge import load_judge

    return load_judge(assets / "judge.safetensors", text_encoder=text_encoder)


@pytest.mark.filterwarnings("ignore:the embedded prior was trained on clips up to")
def test_full_run_prints_every_section_and_writes_consistent_json(corpus, assets, judge, tmp_path, capsys):
    out = tmp_path / "stack.json"
    rc = bench_mod.main(["--corpus", str(corpus), "--assets", str(assets), "--gens-per-concept", "2",
                         "--steps", "2", "--threads", "1", "--repeats", "10", "--json", str(out), "--no-progress"])
    printed = capsys.readouterr().out
    assert rc == 0
    for heading in ("### 1. Judge", "### 2. Codec", "### 3. Flow prior", "### 4. Speed", "### Summary"):
        assert heading in printed
    assert printed.count("**PASS**") + printed.count("**FAIL**") >= 2 * 5  # section verdict + summary row each
    res = json.loads(out.read_text())

    n_concepts = len(CONCEPTS)
    j = res["judge"]
    assert j["n_clips"] == n_concepts * N_HELDOUT and j["pass"] == (j["top1"] >= 0.8)
    # the codec section's own classification of the originals follows evaluate_judge's protocol
    ev = evaluate_judge(corpus, judge, progress=False)
    c = res["codec"]
    assert c["n_clips"] == n_concepts * N_HELDOUT
    assert c["top1_original"] == pytest.approx(ev["top1"])
    # tiny codec: hop 128, 8 latent channels -> 22050 / (8 * 22050 / 128) = 16
    assert c["compression_factor"] == pytest.approx(16.0)
    assert c["latent_values_per_s"] == pytest.approx(8 * SR / 128)
    assert math.isfinite(c["si_sdr_db_median"]) and c["stft_distance_median"] > 0

    f = res["flow"]
    assert f["n_generations_canonical"] == n_concepts * 2 and f["n_generations_paraphrase"] == n_concepts * 2
    assert f["n_heldout_clips"] == n_concepts * N_HELDOUT and f["n_train_clips"] == n_concepts * 2
    for key in ("top1_canonical", "top1_paraphrase", "top1_real_heldout"):
        assert 0.0 <= f[key] <= 1.0
    assert f["pass_canonical"] == (f["top1_canonical"] >= 0.7)
    assert f["pass_paraphrase"] == (f["top1_paraphrase"] >= 0.6)
    assert f["steps"] == 2 and f["seconds_max"] <= 0.5  # clamped to the tiny flow model's 0.5 s window
    assert all(math.isfinite(f[k]) for k in ("kad_generated_vs_heldout", "kad_train_vs_heldout"))

    s = res["speed"]
    assert s["repeats"] == 10 and s["threads"] == 1
    assert s["total_ms_min"] <= s["total_ms_median"]
    assert s["pass"] == (s["total_ms_median"] <= 150.0)


class _LosslessCodec(torch.nn.Module):
    """A codec whose reconstruction is exact (the oracle for the codec section)."""

    sample_rate, channels, latent_channels, hop_length = SR, 1, 4, 4

    def reconstruct(self, audio: torch.Tensor) -> torch.Tensor:
        return audio.clone()


def test_lossless_codec_scores_a_perfect_reconstruction(corpus, judge):
    corpus_info = bench_mod.read_corpus(corpus)
    bench = bench_mod.Bench(corpus_info, judge, range(len(CONCEPTS)), progress=False)
    r = bench_mod.codec_section(bench, _LosslessCodec())
    assert r["ratio"] == pytest.approx(1.0) and r["prediction_agreement"] == 1.0
    assert r["top1_reconstruction"] == r["top1_original"]
    assert r["stft_distance_median"] < 1e-4
    assert r["si_sdr_db_median"] > 60.0
    assert r["compression_factor"] == pytest.approx(1.0)  # 4 latent values per 4 samples


def test_batched_generation_matches_generate_row_by_row(text_encoder):
    from sds_audio.flow import generate
    from sds_audio.priors.embedded import EmbeddedPrior

    codec, flow = build_parts(0)
    prior = EmbeddedPrior(codec, flow, text_encoder=text_encoder, codec_precision="float32")
    prompts = ["a sine tone", "hissing static with a long tail"]  # different token counts: padded batch
    seeds = [bench_mod.generation_seed(0, c, 0, 0) for c in range(2)]
    batch = bench_mod.generate_batch(prior, prompts, 0.4, seeds, steps=3, cfg=3.0, sway_coef=-1.0)
    assert batch.shape == (2, 1, round(0.4 * SR))
    for i, (p, s) in enumerate(zip(prompts, seeds)):
        single = generate(p, seconds=0.4, steps=3, cfg=3.0, seed=s, sway_coef=-1.0, prior=prior, progress=False)
        torch.testing.assert_close(batch[i:i + 1], single, atol=1e-5, rtol=1e-4)


def test_text_variants_condition_as_documented(text_encoder):
    from sds_audio.priors.embedded import EmbeddedPrior

    codec, flow = build_parts(0)
    prior = EmbeddedPrior(codec, flow, text_encoder=text_encoder, codec_precision="float32")
    captions = ["a sine tone number 1", "white noise number 2"]
    plain = prior.flow_conditions(prior.condition("a sine tone number 1", seconds=0.4), 17)[0]
    # a training caption is its own nearest caption: the condition is the prompt's
    nearest = bench_mod.TextVariant("nearest-caption", prior, captions)
    c, _ = nearest.condition("a sine tone number 1", 0.4, 17)
    torch.testing.assert_close(c.tokens, plain.tokens)
    c, _ = nearest.condition("hissing white noise", 0.4, 17)            # -> the noise caption
    torch.testing.assert_close(c.pooled, prior.flow_conditions(prior.condition(captions[1]), 17)[0].pooled)
    # pooled: one zero token, the prompt's pooled embedding
    c, _ = bench_mod.TextVariant("pooled", prior, captions).condition("a sine tone number 1", 0.4, 17)
    assert c.tokens.shape[1] == 1 and float(c.tokens.abs().sum()) == 0.0 and bool(c.mask.all())
    torch.testing.assert_close(c.pooled, plain.pooled)
    # known tokens: the word pieces of "whistling" (never in a caption) are hidden, the rest kept
    known = bench_mod.TextVariant("known-tokens", prior, captions)
    c, _ = known.condition("a sine tone number 1", 0.4, 17)
    assert torch.equal(c.mask, plain.mask)
    c, _ = known.condition("a whistling sine tone", 0.4, 17)
    pieces = text_encoder.tokenizer.tokenize("a whistling sine tone")
    hidden = [p for p, m in zip(["[CLS]"] + pieces + ["[SEP]"], c.mask[0].tolist()) if not m]
    assert hidden and all(p not in ("a", "sine", "tone", "[CLS]", "[SEP]") for p in hidden)
    assert float(c.tokens[0, ~c.mask[0]].abs().sum()) == 0.0
    # concept-both: a classifier fitted on the captions picks the concept; its nearest caption's pooled embedding,
    # then that caption's tokens followed by the prompt's
    concepts = {captions[0]: "sine", captions[1]: "noise"}
    both = bench_mod.TextVariant("concept-both", prior, captions, concepts)
    ref = prior.flow_conditions(prior.condition(captions[1]), 17)[0]
    own = prior.flow_conditions(prior.condition("hissing white noise"), 17)[0]
    c, _ = both.condition("hissing white noise", 0.4, 17)
    torch.testing.assert_close(c.pooled, ref.pooled)
    n = ref.tokens.shape[1]
    torch.testing.assert_close(c.tokens[:, :n], ref.tokens)
    torch.testing.assert_close(c.tokens[:, n:], own.tokens)
    c, _ = bench_mod.TextVariant("concept-pooled", prior, captions, concepts).condition("hissing white noise", 0.4, 17)
    torch.testing.assert_close(c.pooled, ref.pooled)
    torch.testing.assert_close(c.tokens, own.tokens)
    # concept-centroid: the pooled input is the unit mean of the predicted concept's captions' embeddings
    three = captions + ["loud white noise number 3"]
    centroid = bench_mod.TextVariant("concept-centroid", prior, three, concepts | {three[2]: "noise"})
    c, _ = centroid.condition("hissing white noise", 0.4, 17)
    noise_pooled = text_encoder.encode([three[1], three[2]])[2]
    torch.testing.assert_close(c.pooled[0], torch.nn.functional.normalize(noise_pooled.mean(0), dim=0),
                               atol=1e-5, rtol=1e-4)
    picked = centroid.captions[int(centroid.anchor.nearest(text_encoder.encode(["hissing white noise"])[2])[0])]
    ref = prior.flow_conditions(prior.condition(picked), 17)[0]
    torch.testing.assert_close(c.tokens[:, :ref.tokens.shape[1]], ref.tokens)
    torch.testing.assert_close(c.tokens[:, ref.tokens.shape[1]:], own.tokens)
    with pytest.raises(SDSAudioError):
        bench_mod.TextVariant("concept-both", prior, captions)
    with pytest.raises(SDSAudioError):
        bench_mod.TextVariant("paraphrase-magic", prior, captions)


def test_missing_weights_end_the_run_with_one_line_naming_the_file(corpus, tmp_path, capsys):
    rc = bench_mod.main(["--corpus", str(corpus), "--assets", str(tmp_path), "--sections", "judge,codec"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1
    assert len(err) == 2  # judge and codec weights; the flow model is not needed by these sections
    assert str(tmp_path / "codec.safetensors") in err[0] and "sds-audio train codec" in err[0]
    assert str(tmp_path / "judge.safetensors") in err[1] and "sds-audio train judge" in err[1]


def test_codec_training_checkpoint_loads_its_codec_weights(tmp_path):
    from sds_audio.codec.checkpoint import TrainingState, save_checkpoint

    codec, _ = build_parts(3)
    disc = torch.nn.Linear(2, 2)
    path = save_checkpoint(tmp_path / "checkpoint.safetensors", codec=codec, discriminator=disc,
                           opt_g=torch.optim.Adam(codec.parameters()), opt_d=torch.optim.Adam(disc.parameters()),
                           generator=torch.Generator().manual_seed(0), state=TrainingState(step=123, settings={}))
    loaded, source = bench_mod.load_codec_weights(path)
    assert "step 123" in source
    for key, value in codec.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value, atol=0, rtol=0)


def test_helpers_select_concepts_durations_and_seeds(corpus):
    assert bench_mod.select_concepts(98, 4) == [0, 32, 65, 97]
    assert bench_mod.select_concepts(5, None) == [0, 1, 2, 3, 4]
    assert bench_mod.select_concepts(5, 9) == [0, 1, 2, 3, 4]
    info = bench_mod.read_corpus(corpus)
    train = sorted(r["duration_s"] for r in info.records if r["concept"] == "sine" and r["split"] == "train")
    assert bench_mod.typical_seconds(info, 0, max_s=4.0, min_s=0.1) == pytest.approx(train[1])  # median of 3
    assert bench_mod.typical_seconds(info, 0, max_s=0.2, min_s=0.1) == 0.2
    assert bench_mod.typical_seconds(info, 0, max_s=4.0, min_s=0.9) == 0.9
    seeds = {bench_mod.generation_seed(0, c, k, i) for c in range(3) for k in range(2) for i in range(4)}
    assert len(seeds) == 24  # every generation its own seed
    assert bench_mod.generation_seed(1, 0, 0, 0) != bench_mod.generation_seed(0, 0, 0, 0)


def test_second_paraphrase_set_is_new_held_out_wording():
    from sds_audio.corpus.captions import has_paraphrase_marker, paraphrases
    from sds_audio.corpus.concepts import CONCEPTS

    names = [c.name for c in CONCEPTS]
    second = bench_mod.paraphrase_set(names, "second")
    validation = bench_mod.paraphrase_set(names, "validation")
    assert bench_mod.paraphrase_set(names, "corpus") == [paraphrases(c) for c in CONCEPTS]
    for c, extra, val in zip(CONCEPTS, second, validation):
        assert len(extra) == 4 and all(has_paraphrase_marker(p) for p in extra)
        assert not set(extra) & set(paraphrases(c)), c.name  # none of the corpus's four
        assert len(val) == 8 and all(has_paraphrase_marker(p) for p in val)
        assert not set(val) & (set(extra) | set(paraphrases(c))), c.name
    with pytest.raises(SDSAudioError, match="paraphrase-set must be one of"):
        bench_mod.paraphrase_set(names, "test")
