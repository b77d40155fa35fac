"""train_flow on a tiny corpus with a tiny codec: loss goes down, checkpoints, exact resume, caches."""

from __future__ import annotations

import json

import pytest
import torch

from sds_audio.errors import SDSAudioError
from sds_audio.flow.condition import FlowCondition
from sds_audio.flow import load_flow, train_flow
from sds_audio.flow.latents import load_or_encode
from sds_audio.flow.train import TextBank, caption_rewrites, lr_at, perturb_text, sample_batch, step_generator

TINY_MODEL = dict(width=32, depth=2, heads=2, patch_size=2, time_features=16, duration_features=8)


def _train(corpus, out, codec, text_encoder, steps, **kw):
    args = dict(steps=steps, batch_size=8, segment_s=0.5, min_segment_s=0.25, lr=3e-3, seed=0, warmup_steps=2,
                checkpoint_every=3, model_config=TINY_MODEL, eval_every=10, log_every=1, text_encoder=text_encoder,
                progress=False)
    args.update(kw)
    return train_flow(corpus, out, codec, **args)


def test_training_reduces_loss_and_writes_outputs(tmp_path, tiny_corpus_dir, make_codec, text_encoder):
    codec = make_codec()
    metrics = _train(tiny_corpus_dir, tmp_path, codec, text_encoder, steps=40)
    losses = [h["loss"] for h in metrics["history"]]
    assert len(losses) == 40
    first, last = sum(losses[:8]) / 8, sum(losses[-8:]) / 8
    assert last < 0.8 * first, (first, last)
    for name in ("flow.safetensors", "checkpoint.safetensors", "metrics.json", "latents_train.safetensors",
                 "latents_heldout.safetensors"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["steps"] == 40 and saved["train_clips"] == 8 and saved["heldout_clips"] == 2
    assert saved["heldout_loss"] is not None and saved["heldout_loss"] < 2.5
    model = load_flow(tmp_path / "flow.safetensors")
    assert model.config.max_duration_s == 0.5 and model.config.latent_channels == 8
    assert model.config.latent_rate == pytest.approx(22050 / 128)
    assert model.latent_std.min() > 0 and not torch.allclose(model.latent_std, torch.ones(8))
    # the prompt anchor is fitted on the distinct training captions
    train_captions = load_or_encode(tiny_corpus_dir, codec, "train", 0.5, tmp_path / "latents_train.safetensors",
                                    progress=False).captions
    assert model.anchor is not None and model.anchor.bank.shape == (len(set(train_captions)), 384)
    torch.testing.assert_close(model.anchor.bank, text_encoder.encode(list(dict.fromkeys(train_captions)))[2],
                               atol=2e-3, rtol=0)  # the bank holds the captions' pooled embeddings (f16 bank)


def test_resume_reproduces_an_uninterrupted_run(tmp_path, tiny_corpus_dir, make_codec, text_encoder):
    codec = make_codec()
    _train(tiny_corpus_dir, tmp_path / "a", codec, text_encoder, steps=6)
    _train(tiny_corpus_dir, tmp_path / "b", codec, text_encoder, steps=3)
    cache = tmp_path / "b" / "latents_train.safetensors"
    mtime = cache.stat().st_mtime_ns
    metrics = _train(tiny_corpus_dir, tmp_path / "b", codec, text_encoder, steps=6)
    assert metrics["resumed_from"] == 3 and metrics["steps_this_run"] == 3
    assert cache.stat().st_mtime_ns == mtime  # the latent cache was reused
    a = load_flow(tmp_path / "a" / "flow.safetensors").state_dict()
    b = load_flow(tmp_path / "b" / "flow.safetensors").state_dict()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    # a checkpoint from other settings is refused
    with pytest.raises(SDSAudioError, match="another run"):
        _train(tiny_corpus_dir, tmp_path / "b", codec, text_encoder, steps=8, lr=1e-3)
    # resume=False starts over
    metrics = _train(tiny_corpus_dir, tmp_path / "b", codec, text_encoder, steps=2, lr=1e-3, resume=False)
    assert metrics["resumed_from"] == 0


def test_batches_dropout_rate_and_padding(tmp_path, tiny_corpus_dir, make_codec, make_flow, text_encoder):
    codec = make_codec()
    latents = load_or_encode(tiny_corpus_dir, codec, "train", 0.5, tmp_path / "lat.safetensors", progress=False)
    assert latents.latents.shape == (8, 8, 87)  # ceil(0.5 * 22050 / 128) frames
    # frames past a clip are the codec's latents of silence
    silence = codec.encode(torch.zeros(1, 1, 11025))[0, :, -1]
    short = int(torch.argmin(latents.n_frames))
    assert int(latents.n_frames[short]) < 80
    torch.testing.assert_close(latents.latents[short, :, -1].float(), silence, atol=2e-3, rtol=1e-2)
    text = TextBank.build(latents.captions, text_encoder, progress=False)
    model = make_flow(max_duration_s=0.5, latent_rate=22050 / 128)
    drops, n = 0, 0
    for step in range(150):
        x0, cond = sample_batch(latents, text, model, 32, 40, step_generator(0, step), cond_dropout=0.3)
        assert x0.shape[0] == 32 and 40 <= x0.shape[-1] <= 87
        assert x0.shape[-1] % 2 == 0 or x0.shape[-1] == 87  # whole patches, or the whole window
        assert bool((cond.seconds <= x0.shape[-1] / latents.latent_rate + 1e-6).all())
        assert bool((cond.seconds > 0).all())
        drops += int(cond.drop.sum())
        n += 32
    rate = drops / n
    assert abs(rate - 0.3) < 0.03, rate  # 4800 draws: 3 sigma ~ 0.02
    # the same step always draws the same batch
    a = sample_batch(latents, text, model, 4, 40, step_generator(0, 7), 0.1)
    b = sample_batch(latents, text, model, 4, 40, step_generator(0, 7), 0.1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1].seconds, b[1].seconds)


def test_token_dropout_hides_tokens_and_keeps_the_pooled_embedding(tmp_path, tiny_corpus_dir, make_codec, make_flow,
                                                                   text_encoder):
    latents = load_or_encode(tiny_corpus_dir, make_codec(), "train", 0.5, tmp_path / "lat.safetensors",
                             progress=False)
    text = TextBank.build(latents.captions, text_encoder, progress=False)
    model = make_flow(max_duration_s=0.5, latent_rate=22050 / 128)
    hidden, kept, n = 0, 0, 0
    for step in range(100):
        g0, g1 = step_generator(0, step), step_generator(0, step)
        x_plain, plain = sample_batch(latents, text, model, 32, 40, g0, cond_dropout=0.2)
        x_hid, cond = sample_batch(latents, text, model, 32, 40, g1, cond_dropout=0.2, token_dropout=0.5)
        # the extra draw comes last: the clips, windows and dropped rows are the same
        assert torch.equal(x_plain, x_hid) and torch.equal(plain.drop, cond.drop)
        torch.testing.assert_close(cond.pooled, plain.pooled)
        one_zero_token = (cond.mask.sum(1) == 1) & (cond.tokens[:, 0].abs().sum(1) == 0)
        assert not bool((one_zero_token & cond.drop).any())  # only captioned rows lose their tokens
        unchanged = torch.tensor([torch.equal(cond.tokens[i], plain.tokens[i])
                                  and torch.equal(cond.mask[i], plain.mask[i]) for i in range(32)])
        assert bool((one_zero_token ^ unchanged).all())
        hidden += int(one_zero_token.sum())
        kept += int((~cond.drop).sum())
    assert abs(hidden / kept - 0.5) < 0.04, hidden / kept  # ~2,560 captioned rows: 3 sigma ~ 0.03
    with pytest.raises(SDSAudioError, match="token_dropout"):
        train_flow(tiny_corpus_dir, tmp_path / "bad", make_codec(), steps=1, token_dropout=1.0,
                   text_encoder=text_encoder, progress=False)


def test_text_noise_is_relative_and_spares_dropped_rows(make_condition):
    cond = make_condition(64, n_tokens=6, seed=3)
    cond.pooled = torch.nn.functional.normalize(cond.pooled, dim=-1)
    cond.mask[:, 4:] = False
    cond.tokens[:, 4:] = 0.0
    before = FlowCondition(cond.tokens.clone(), cond.mask.clone(), cond.pooled.clone(), cond.seconds, cond.drop)
    rows = torch.arange(64) % 4 != 0
    perturb_text(cond, rows, 0.5, torch.Generator().manual_seed(0))
    assert torch.equal(cond.tokens[~rows], before.tokens[~rows]) and torch.equal(cond.pooled[~rows],
                                                                                 before.pooled[~rows])
    torch.testing.assert_close(cond.pooled.norm(dim=-1), torch.ones(64))  # unit length, as MiniLM's
    rel = (cond.tokens - before.tokens).norm(dim=-1)[:, :4] / before.tokens.norm(dim=-1)[:, :4]
    assert float(rel[rows].max()) <= 0.5 + 1e-5 and float(rel[rows].mean()) > 0.15  # ~ U[0, 0.5]: mean 0.25
    torch.testing.assert_close(rel[rows], rel[rows][:, :1].expand(-1, 4))  # one noise level per row
    assert torch.equal(cond.tokens[:, 4:], before.tokens[:, 4:])  # padding stays zero
    cos = (cond.pooled * before.pooled).sum(-1)[rows]
    assert float(cos.min()) > 0.85 and float(cos.mean()) < 0.995


def test_caption_augmentation_draws_rewrites(tmp_path, tiny_corpus_dir, make_codec, make_flow, text_encoder):
    latents = load_or_encode(tiny_corpus_dir, make_codec(), "train", 0.5, tmp_path / "lat.safetensors",
                             progress=False)
    rewrites = caption_rewrites(latents.captions, 3, seed=0)
    assert rewrites == caption_rewrites(latents.captions, 3, seed=0)
    assert set(rewrites) == set(latents.captions) and all(len(v) == 3 for v in rewrites.values())
    text = TextBank.build(latents.captions + [v for vs in rewrites.values() for v in vs], text_encoder,
                          progress=False)
    model = make_flow(max_duration_s=0.5, latent_rate=22050 / 128)
    swapped = n = 0
    for step in range(40):
        x_plain, plain = sample_batch(latents, text, model, 16, 40, step_generator(0, step), cond_dropout=0.0)
        x_aug, aug = sample_batch(latents, text, model, 16, 40, step_generator(0, step), cond_dropout=0.0,
                                  rewrites=rewrites, caption_augment=0.5)
        assert torch.equal(x_plain, x_aug)  # same clips and windows; only the text differs
        differs = (aug.pooled - plain.pooled).abs().sum(-1) > 0
        swapped += int(differs.sum())
        n += 16
    # half the rows draw a rewrite; some rewrites of these short captions equal the caption
    changed = sum(sum(v != c for v in rewrites[c]) / 3 for c in latents.captions) / len(latents.captions)
    assert changed > 0.2 and abs(swapped / n - 0.5 * changed) < 0.07, (swapped / n, changed)


def test_init_from_starts_at_the_given_weights(tmp_path, tiny_corpus_dir, make_codec, text_encoder):
    codec = make_codec()
    _train(tiny_corpus_dir, tmp_path / "a", codec, text_encoder, steps=4)
    start = load_flow(tmp_path / "a" / "flow.safetensors").state_dict()
    # lr ~ 0: the fine-tuned model is the starting one (a fresh init would differ everywhere)
    _train(tiny_corpus_dir, tmp_path / "b", codec, text_encoder, steps=1, lr=1e-12, warmup_steps=1,
           init_from=tmp_path / "a" / "flow.safetensors", caption_augment=0.5, text_noise=0.3)
    tuned = load_flow(tmp_path / "b" / "flow.safetensors").state_dict()
    for name in start:
        torch.testing.assert_close(tuned[name], start[name], atol=1e-3, rtol=0, msg=name)
    # without init_from the same run stays at the seed's initialisation, which 4 steps at lr 3e-3 left behind
    _train(tiny_corpus_dir, tmp_path / "c", codec, text_encoder, steps=1, lr=1e-12, warmup_steps=1)
    untrained = load_flow(tmp_path / "c" / "flow.safetensors").state_dict()
    assert max(float((untrained[k] - start[k]).abs().max()) for k in start) > 5e-3
    with pytest.raises(SDSAudioError, match="another flow architecture"):
        _train(tiny_corpus_dir, tmp_path / "d", codec, text_encoder, steps=1,
               init_from=tmp_path / "a" / "flow.safetensors", model_config={**TINY_MODEL, "depth": 1})
    with pytest.raises(SDSAudioError, match="caption_augment"):
        _train(tiny_corpus_dir, tmp_path / "e", codec, text_encoder, steps=1, caption_augment=1.5)


def test_lr_schedule():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(10, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(55, 100, 1.0, 10) == pytest.approx(0.55)


def test_bad_arguments(tmp_path, tiny_corpus_dir, make_codec, text_encoder):
    with pytest.raises(SDSAudioError, match="min_segment_s"):
        _train(tiny_corpus_dir, tmp_path, make_codec(), text_encoder, steps=1, min_segment_s=1.0)
    with pytest.raises(SDSAudioError, match="may not set"):
        _train(tiny_corpus_dir, tmp_path, make_codec(), text_encoder, steps=1,
               model_config={**TINY_MODEL, "latent_channels": 4})
    with pytest.raises(SDSAudioError, match="manifest"):
        _train(tmp_path / "nowhere", tmp_path, make_codec(), text_encoder, steps=1)
