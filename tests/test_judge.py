"""Tests for sds_audio.judge: shapes, normalisation, audio handling, files, training, resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from sds_audio.judge import model as judge_model
from sds_audio.judge import train as judge_train
from sds_audio.errors import SDSAudioError
from sds_audio.judge import (JudgeConfig, JudgeModel, classify, embed_audio, evaluate_judge, judge_score,
                             load_judge, save_judge, train_judge)
from tiny_corpus import write_corpus  # tests/ is on pytest's pythonpath

SR = 22050
TINY = JudgeConfig(n_fft=512, hop_length=128, n_mels=32, channels=(8, 16), head_dim=32, embed_dim=16,
                   segment_s=0.5, dropout=0.0)
CONCEPTS = [
    {"concept": "sine", "family": "tone", "prompt": "a sine tone",
     "paraphrases": ["a pure whistling tone", "a clean sinusoidal beep"]},
    {"concept": "noise", "family": "noise", "prompt": "white noise",
     "paraphrases": ["hissing static", "a burst of broadband hiss"]},
]
CAPTIONS = {"sine": ["a pure sine tone", "sine wave beep", "a steady sine tone"],
            "noise": ["white noise hiss", "loud white noise", "static noise burst"]}


def _sine(f0_hz: float, n: int, amp: float) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * f0_hz * np.arange(n) / SR)).astype(np.float32)


def _noise(rs: np.random.Generator, n: int, amp: float) -> np.ndarray:
    return (amp * rs.uniform(-1, 1, n)).astype(np.float32)


def write_tiny_corpus(root: Path, n_per_concept: int = 10, n_heldout: int = 3, seed: int = 0) -> Path:
    """A corpus in the shared format: sine tones vs white noise, 0.3-0.8 s, 16-bit mono WAV."""
    rs = np.random.default_rng(seed)

    def clips():
        for concept in ("sine", "noise"):
            for i in range(n_per_concept + n_heldout):
                n = int(rs.uniform(0.3, 0.8) * SR)
                amp = float(rs.uniform(0.1, 0.8))
                audio = _sine(float(rs.uniform(200, 3000)), n, amp) if concept == "sine" else _noise(rs, n, amp)
                yield (f"{concept}_{i:03d}", concept, CAPTIONS[concept][i % 3],
                       "train" if i < n_per_concept else "heldout", audio)

    return write_corpus(root, clips(), CONCEPTS, SR)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_tiny_corpus(tmp_path_factory.mktemp("corpus"))


TRAIN_KW = dict(steps=30, batch_size=8, segment_s=0.5, lr=3e-3, warmup_steps=5, seed=0, checkpoint_every=10,
                eval_every=0, config=TINY, precision="fp32", num_threads=1, progress=False)


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("judge_out")
    metrics = train_judge(corpus, out, **TRAIN_KW)
    return out, metrics


def _model(seed: int = 0) -> JudgeModel:
    torch.manual_seed(seed)
    return JudgeModel(TINY).eval()


# --------------------------------------------------------------------------- model basics
def test_embeddings_are_unit_vectors_with_expected_shapes():
    m = _model()
    g = torch.Generator().manual_seed(0)
    audio = 0.3 * torch.randn(3, 2, 30000, generator=g)
    a = m.embed_audio(audio, 44100)
    t = m.embed_text(["a sine tone", "white noise"])
    assert a.shape == (3, TINY.embed_dim) and t.shape == (2, TINY.embed_dim)
    torch.testing.assert_close(a.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(t.norm(dim=-1), torch.ones(2))
    s = judge_score(audio, "a sine tone", judge=m, sample_rate=44100)
    assert s.shape == (3,) and torch.all(s.abs() <= 1.0 + 1e-6)
    torch.testing.assert_close(s, a @ t[0])


def test_score_is_batch_safe_and_channel_and_rate_agnostic():
    m = _model()
    g = torch.Generator().manual_seed(1)
    mono = 0.3 * torch.randn(4, 1, 11025, generator=g)
    batch = m.score(mono, "a sine tone", SR)
    single = torch.cat([m.score(mono[i:i + 1], "a sine tone", SR) for i in range(4)])
    torch.testing.assert_close(batch, single, atol=1e-5, rtol=0)
    # identical stereo channels downmix to the mono signal
    torch.testing.assert_close(m.score(mono.expand(-1, 2, -1), "a sine tone", SR), batch, atol=1e-6, rtol=0)
    # a 440 Hz tone at 44.1 kHz scores like the same tone at 22.05 kHz (resampled)
    t = torch.arange(44100) / 44100
    tone_44k = (0.5 * torch.sin(2 * math.pi * 440 * t)).view(1, 1, -1)
    tone_22k = tone_44k[..., ::2]
    s44 = float(judge_score(tone_44k, "x", judge=m, sample_rate=44100))
    assert s44 == pytest.approx(float(judge_score(tone_22k, "x", judge=m, sample_rate=SR)), abs=2e-2)
    # one prompt per clip
    per_clip = m.score(mono[:2], ["a sine tone", "white noise"], SR)
    torch.testing.assert_close(per_clip[1:], m.score(mono[1:2], "white noise", SR), atol=1e-5, rtol=0)
    with pytest.raises(SDSAudioError, match="prompts"):
        m.score(mono, ["a", "b"], SR)


def test_short_audio_is_zero_padded_to_segment():
    m = _model()
    x = 0.3 * torch.randn(1, 1, 1000, generator=torch.Generator().manual_seed(2))
    padded = torch.nn.functional.pad(x, (0, TINY.min_samples - 1000))
    torch.testing.assert_close(m.embed_audio(x, SR), m.embed_audio(padded, SR))


def test_bad_inputs_raise_user_errors():
    m = _model()
    with pytest.raises(SDSAudioError, match="batch, channels, samples"):
        m.embed_audio(torch.zeros(100), SR)
    with pytest.raises(SDSAudioError, match="empty"):
        m.embed_text([""])


def test_contrastive_loss_reduces_to_clip_loss_and_counts_same_concept_positives():
    g = torch.Generator().manual_seed(3)
    a = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    t = torch.nn.functional.normalize(torch.randn(5, 8, generator=g), dim=-1)
    scale = torch.tensor(10.0)
    logits = scale * a @ t.T
    clip = 0.5 * (torch.nn.functional.cross_entropy(logits, torch.arange(5))
                  + torch.nn.functional.cross_entropy(logits.T, torch.arange(5)))
    torch.testing.assert_close(judge_train._contrastive_loss(a, t, torch.arange(5), scale), clip)
    concept = torch.tensor([0, 0, 1, 2, 2])
    lsm = logits.log_softmax(1)
    same = (concept[:, None] == concept[None]).float()
    manual_a = -torch.stack([lsm[i][same[i].bool()].mean() for i in range(5)]).mean()
    lsm_t = logits.T.log_softmax(1)
    manual_t = -torch.stack([lsm_t[i][same[i].bool()].mean() for i in range(5)]).mean()
    torch.testing.assert_close(judge_train._contrastive_loss(a, t, concept, scale), 0.5 * (manual_a + manual_t))


def test_mel_domain_gain_augmentation_matches_waveform_gain():
    """Gain applied to the cached mel power equals the mel of the amplified waveform."""
    m = _model()
    x = 0.2 * torch.randn(1, 1, 8000, generator=torch.Generator().manual_seed(4))
    gain_db = -12.0
    mel = m.features(x)[0]
    power = (2 * mel).exp() - judge_model._LOG_EPS
    aug = 0.5 * torch.log(power * 10 ** (gain_db / 10) + judge_model._LOG_EPS)
    direct = m.features(x * 10 ** (gain_db / 20))[0]
    torch.testing.assert_close(aug, direct, atol=1e-3, rtol=0)


def test_concept_balanced_sampler():
    g = torch.Generator().manual_seed(5)
    pools = [torch.arange(0, 50), torch.arange(50, 52), torch.arange(52, 60)]
    clips = judge_train._sample_clips(pools, 6, g)
    owner = [0 if c < 50 else 1 if c < 52 else 2 for c in clips.tolist()]
    assert sorted(owner) == [0, 0, 1, 1, 2, 2]
    clips = judge_train._sample_clips(pools, 2, g)
    owner = [0 if c < 50 else 1 if c < 52 else 2 for c in clips.tolist()]
    assert len(set(owner)) == 2  # distinct concepts when there are enough


# --------------------------------------------------------------------------- files
def test_save_load_round_trip(tmp_path):
    m = _model(7)
    x = 0.3 * torch.randn(2, 1, 12000, generator=torch.Generator().manual_seed(6))
    p32 = save_judge(m, tmp_path / "j32.safetensors", dtype=torch.float32)
    p16 = save_judge(m, tmp_path / "j16.safetensors")
    m32, m16 = load_judge(p32, text_encoder=m.text_encoder), load_judge(p16, text_encoder=m.text_encoder)
    assert m32.config == TINY and not m32.training
    assert not any(p.requires_grad for p in m32.parameters())
    torch.testing.assert_close(m32.embed_audio(x, SR), m.embed_audio(x, SR))
    torch.testing.assert_close(m32.embed_text(["a sine tone"]), m.embed_text(["a sine tone"]))
    torch.testing.assert_close(m16.score(x, "a sine tone", SR), m.score(x, "a sine tone", SR), atol=5e-3, rtol=0)
    assert p16.stat().st_size < p32.stat().st_size


def test_broken_and_missing_files_raise_errors_naming_the_file(tmp_path, monkeypatch):
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a safetensors file")
    with pytest.raises(SDSAudioError, match="broken.safetensors"):
        load_judge(bad)
    truncated = tmp_path / "truncated.safetensors"
    good = save_judge(_model(), tmp_path / "good.safetensors")
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(SDSAudioError, match="truncated.safetensors"):
        load_judge(truncated)
    with pytest.raises(SDSAudioError, match="nothing.safetensors"):
        load_judge(tmp_path / "nothing.safetensors")
    from safetensors.torch import save_file
    save_file({"x": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(SDSAudioError, match="not an sds-audio judge"):
        load_judge(tmp_path / "other.safetensors")
    missing_default = tmp_path / "assets" / "judge.safetensors"
    monkeypatch.setattr(judge_model, "DEFAULT_JUDGE_PATH", missing_default)
    judge_model.load_default_judge.cache_clear()
    with pytest.raises(SDSAudioError, match="sds-audio train judge --corpus DIR --out DIR") as info:
        judge_score(torch.zeros(1, 1, 100), "a sine tone")
    assert str(missing_default) in str(info.value)
    judge_model.load_default_judge.cache_clear()


# --------------------------------------------------------------------------- training
def test_training_learns_the_toy_problem(trained, corpus):
    out, metrics = trained
    assert metrics["heldout_top1"] == 1.0
    assert metrics["steps"] == TRAIN_KW["steps"] and metrics["n_concepts"] == 2
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["heldout_top1"] == metrics["heldout_top1"]
    judge = load_judge(out / "judge.safetensors")
    # fresh clips, other rates and channel counts
    t = torch.arange(int(0.6 * 44100)) / 44100
    sine = (0.4 * torch.sin(2 * math.pi * 880 * t)).view(1, 1, -1).expand(1, 2, -1)
    noise = 0.3 * (2 * torch.rand(1, 2, t.numel(), generator=torch.Generator().manual_seed(9)) - 1)
    result = classify(torch.cat([sine, noise]), ["a sine tone", "white noise"], judge=judge, sample_rate=44100)
    assert result.index.tolist() == [0, 1]
    torch.testing.assert_close(result.probs.sum(-1), torch.ones(2))
    s = judge_score(torch.cat([sine, noise]), "a sine tone", judge=judge, sample_rate=44100)
    assert s[0] > s[1]
    # gain augmentation: 10 dB quieter is still classified right
    quiet = classify(0.3 * torch.cat([sine, noise]), ["a sine tone", "white noise"], judge=judge, sample_rate=44100)
    assert quiet.index.tolist() == [0, 1]
    emb = embed_audio(sine, judge=judge, sample_rate=44100)
    assert emb.shape == (1, TINY.embed_dim)
    # evaluating from the waveforms agrees with the training-time evaluation on cached features
    ev = evaluate_judge(corpus, judge, progress=False)
    assert ev["top1"] == pytest.approx(metrics["heldout_top1"])
    assert ev["n_clips"] == 6 and ev["paraphrase_top1"] is not None


def test_resume_after_interruption_matches_uninterrupted_run(corpus, trained, tmp_path):
    out_full, _ = trained
    out = tmp_path / "interrupted"

    class Stop(Exception):
        pass

    def stop_at_15(step, info):
        assert math.isfinite(info["loss"])
        if step == 15:
            raise Stop

    with pytest.raises(Stop):
        train_judge(corpus, out, on_step=stop_at_15, **TRAIN_KW)
    assert (out / "judge_checkpoint.safetensors").is_file() and not (out / "judge.safetensors").exists()
    seen = []
    metrics = train_judge(corpus, out, on_step=lambda s, i: seen.append(s), **TRAIN_KW)
    assert seen[0] == 11 and seen[-1] == TRAIN_KW["steps"]  # resumed from the step-10 checkpoint
    a = load_judge(out / "judge.safetensors").state_dict()
    b = load_judge(out_full / "judge.safetensors").state_dict()
    for k in b:
        torch.testing.assert_close(a[k], b[k], atol=2e-3, rtol=0, msg=k)
    assert metrics["steps"] == TRAIN_KW["steps"]
    # a finished run resumed again does no further steps
    seen.clear()
    train_judge(corpus, out, on_step=lambda s, i: seen.append(s), **TRAIN_KW)
    assert seen == []
    # other settings in the same directory are refused
    with pytest.raises(SDSAudioError, match="batch_size"):
        train_judge(corpus, out, **{**TRAIN_KW, "batch_size": 6})


def test_bf16_training_runs_and_bad_precision_is_refused(corpus, tmp_path):
    losses = []
    kw = {**TRAIN_KW, "steps": 4, "precision": "bf16"}
    metrics = train_judge(corpus, tmp_path / "bf16", on_step=lambda s, i: losses.append(i["loss"]), **kw)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert metrics["train_args"]["precision"] == "bf16"
    with pytest.raises(SDSAudioError, match="precision"):
        train_judge(corpus, tmp_path / "bad", **{**TRAIN_KW, "precision": "fp8"})


def test_train_judge_rejects_missing_corpus(tmp_path):
    with pytest.raises(SDSAudioError, match="manifest.jsonl"):
        train_judge(tmp_path / "none", tmp_path / "out", **TRAIN_KW)
