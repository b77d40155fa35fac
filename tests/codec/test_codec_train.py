"""train_codec on a tiny corpus: the loss falls, checkpoints are written, and resume is exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import sds_audio.codec.train as codec_train
from sds_audio.codec import Codec, ReconstructionLoss, load_codec, train_codec
from sds_audio.codec.train import batch_items, learning_rate
from sds_audio.corpus.dataset import CorpusDataset
from sds_audio.errors import SDSAudioError

COMMON = dict(batch_size=2, segment_s=0.1, seed=3, progress=False, eval_clips=2, log_every=2, warmup_steps=2)


def _train_audio(corpus) -> torch.Tensor:
    ds = CorpusDataset(corpus, split="train", segment_s=None)
    return torch.stack([torch.from_numpy(ds.load(i)).unsqueeze(0) for i in range(len(ds))])


def test_training_reduces_reconstruction_loss(tmp_path, tiny_corpus, tiny_config):
    cfg = tiny_config()
    with torch.random.fork_rng():
        torch.manual_seed(COMMON["seed"])
        initial = Codec(cfg).eval()  # train_codec builds its codec from the seed exactly like this
    metrics = train_codec(tiny_corpus, tmp_path / "run", steps=40, lr=3e-3, config=cfg, checkpoint_every=20,
                          **COMMON)
    trained = load_codec(tmp_path / "run" / "codec.safetensors")
    audio = _train_audio(tiny_corpus)
    loss = ReconstructionLoss(22050)
    with torch.no_grad():
        before = loss(initial.reconstruct(audio), audio)["total"].item()
        after = loss(trained.reconstruct(audio), audio)["total"].item()
    assert after < 0.8 * before
    assert (tmp_path / "run" / "checkpoint.safetensors").is_file()
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["steps"] == 40 and saved["n_parameters"] == sum(p.numel() for p in trained.parameters())
    assert saved["hop_length"] == 32 and saved["compression_factor"] == 8.0
    assert [h["step"] for h in saved["history"]] == list(range(2, 41, 2))
    assert saved["eval"]["split"] == "heldout" and saved["eval"]["n_clips"] == 2
    assert len(saved["eval"]["latent_channel_std"]) == cfg.latent_channels
    assert metrics["history"][-1]["loss"] < metrics["history"][0]["loss"]


def _interrupt_at(monkeypatch, when: int):
    real = codec_train._train_step

    def step(step_index, *args, **kwargs):
        if step_index == when:
            raise KeyboardInterrupt
        return real(step_index, *args, **kwargs)
    monkeypatch.setattr(codec_train, "_train_step", step)


@pytest.mark.parametrize("bottleneck,adversarial", [("vae", True), ("rvq", False)])
def test_resume_is_bit_identical(tmp_path, tiny_corpus, tiny_config, monkeypatch, bottleneck, adversarial):
    cfg = tiny_config(bottleneck=bottleneck)
    kwargs = dict(COMMON, steps=6, lr=1e-3, config=cfg, checkpoint_every=3, adversarial=adversarial,
                  adversarial_start_step=1)
    train_codec(tiny_corpus, tmp_path / "straight", **kwargs)

    _interrupt_at(monkeypatch, 4)
    with pytest.raises(KeyboardInterrupt):
        train_codec(tiny_corpus, tmp_path / "resumed", **kwargs)
    ckpt = tmp_path / "resumed" / "checkpoint.safetensors"
    assert ckpt.is_file() and not (tmp_path / "resumed" / "codec.safetensors").exists()
    monkeypatch.undo()
    metrics = train_codec(tiny_corpus, tmp_path / "resumed", **kwargs)
    assert metrics["resumed_from_step"] == 3 and metrics["steps_this_run"] == 3

    a = load_file(str(tmp_path / "straight" / "codec.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "codec.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    ca = load_file(str(tmp_path / "straight" / "checkpoint.safetensors"))
    cb = load_file(str(ckpt))
    for key in ca:  # discriminator and optimiser states too
        assert torch.equal(ca[key], cb[key]), key
    ha = json.loads((tmp_path / "straight" / "metrics.json").read_text())["history"]
    hb = json.loads((tmp_path / "resumed" / "metrics.json").read_text())["history"]
    assert ha == hb
    if adversarial:
        assert all(h["disc"] > 0 for h in ha[1:])


def test_resume_with_other_seed_refused(tmp_path, tiny_corpus, tiny_config):
    kwargs = dict(COMMON, steps=2, lr=1e-3, config=tiny_config(), checkpoint_every=1)
    train_codec(tiny_corpus, tmp_path / "run", **kwargs)
    with pytest.raises(SDSAudioError, match="seed"):
        train_codec(tiny_corpus, tmp_path / "run", **{**kwargs, "seed": 4, "steps": 3})
    with pytest.raises(SDSAudioError, match="different codec config"):
        train_codec(tiny_corpus, tmp_path / "run", **{**kwargs, "config": tiny_config(latent_channels=2)})
    # resume=False starts over
    metrics = train_codec(tiny_corpus, tmp_path / "run", **{**kwargs, "seed": 4, "resume": False})
    assert metrics["resumed_from_step"] == 0


def test_broken_checkpoint_names_file(tmp_path, tiny_corpus, tiny_config):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoint.safetensors").write_bytes(b"garbage")
    with pytest.raises(SDSAudioError, match="checkpoint.safetensors"):
        train_codec(tiny_corpus, tmp_path / "run", steps=2, config=tiny_config(), **COMMON)


def test_data_order_is_a_function_of_seed_and_step():
    items = [batch_items(s, 3, 7, seed=1) for s in range(7)]  # 21 items = 3 epochs of 7
    flat = [i for batch in items for i in batch]
    for epoch in range(3):
        indices = sorted(i for e, i in flat if e == epoch)
        assert indices == list(range(7))  # each epoch visits every clip once
    assert batch_items(5, 3, 7, seed=1) == items[5]
    assert batch_items(5, 3, 7, seed=2) != items[5]


def test_learning_rate_schedule():
    assert learning_rate(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert learning_rate(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert learning_rate(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert learning_rate(100, 100, 1.0, 10) == pytest.approx(0.1)
    values = [learning_rate(s, 100, 1.0, 10) for s in range(10, 101)]
    assert all(np.diff(values) <= 1e-12)


def test_decoder_only_finetune_keeps_latent_space(tmp_path, tiny_corpus, tiny_config):
    from sds_audio.flow.latents import latent_space_fingerprint, module_fingerprint

    cfg = tiny_config()
    train_codec(tiny_corpus, tmp_path / "base", steps=6, lr=3e-3, config=cfg, checkpoint_every=6, **COMMON)
    base = load_codec(tmp_path / "base" / "codec.safetensors")
    audio = _train_audio(tiny_corpus)
    loss = ReconstructionLoss(22050)
    with torch.no_grad():
        before = loss(base.reconstruct(audio), audio)["total"].item()
    metrics = train_codec(tiny_corpus, tmp_path / "ft", steps=30, lr=3e-3, checkpoint_every=30,
                          init_from=tmp_path / "base" / "codec.safetensors", decoder_only=True, **COMMON)
    tuned = load_codec(tmp_path / "ft" / "codec.safetensors")
    assert tuned.config == base.config and metrics["settings"]["decoder_only"] is True
    # the encoder side is bit-identical, the decoder moved and reconstructs better
    torch.testing.assert_close(tuned.encode(audio), base.encode(audio), rtol=0, atol=0)
    assert latent_space_fingerprint(tuned) == latent_space_fingerprint(base)
    assert module_fingerprint(tuned.decoder) != module_fingerprint(base.decoder)
    with torch.no_grad():
        after = loss(tuned.reconstruct(audio), audio)["total"].item()
    assert after < before
    with pytest.raises(SDSAudioError, match="init_from"):
        train_codec(tiny_corpus, tmp_path / "bad", steps=1, decoder_only=True, **COMMON)
    with pytest.raises(SDSAudioError, match="another codec architecture"):
        train_codec(tiny_corpus, tmp_path / "bad", steps=1, init_from=tmp_path / "base" / "codec.safetensors",
                    config=tiny_config(latent_channels=2), **COMMON)
