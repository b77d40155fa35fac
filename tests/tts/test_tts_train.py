"""Training on an LJSpeech-layout directory: batches, checkpoints, and a stopped run that resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

from sds_audio.errors import SDSAudioError
from sds_audio.tts import TTSConfig, TTSModel
from sds_audio.tts.data import SpeechCache
from sds_audio.tts.train import lr_at, pick_batch, train_tts
from sds_audio.tts.weights import load_tts_model

TINY = TTSConfig(symbols="characters", text_width=16, text_depth=1, text_heads=2, text_convs=1, duration_width=16,
                 width=16, depth=1, heads=2, time_features=16)
TEXTS = ["a cat", "the dog ran", "we sing", "rain fell down", "go now", "bread is good", "sun and moon", "hi there"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("lj")
    (root / "wavs").mkdir()
    rng = np.random.default_rng(0)
    lines, speakers = [], []
    for i, text in enumerate(TEXTS):
        n = int(16000 * (0.6 + 0.1 * len(text) / 4))
        t = np.arange(n) / 16000
        audio = 0.3 * np.sin(2 * np.pi * (120 + 20 * i) * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * t))
        audio += 0.01 * rng.standard_normal(n)
        sf.write(str(root / "wavs" / f"u{i}.wav"), audio.astype(np.float32), 16000)
        lines.append(f"u{i}|{text}|{text}")
        speakers.append(f"u{i}|{'a' if i % 2 else 'b'}|{'valid' if i == 7 else 'train'}")
    (root / "metadata.csv").write_text("\n".join(lines) + "\n")
    (root / "speakers.csv").write_text("\n".join(speakers) + "\n")
    return root


def test_lr_schedule():
    assert lr_at(0, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(9, 100, 1.0, 10) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10) == pytest.approx(0.1)
    assert lr_at(55, 100, 1.0, 10) == pytest.approx(0.55)


def test_pick_batch_respects_the_frame_budget():
    frames = [10, 12, 30, 31, 33, 60, 61, 90]
    offsets = torch.tensor([0] + frames).cumsum(0)
    cache = SpeechCache(torch.zeros(1, int(offsets[-1])), offsets, torch.zeros(0), torch.zeros(9, dtype=torch.long),
                        torch.zeros(8, dtype=torch.long), [str(i) for i in range(8)], ["s"], ["train"] * 8)
    order = list(range(8))
    for seed in range(20):
        batch = pick_batch(order, cache, torch.Generator().manual_seed(seed), frames_per_batch=100, max_batch=3)
        longest = max(frames[i] for i in batch)
        assert 1 <= len(batch) <= 3 and (len(batch) == 1 or longest * len(batch) <= 100)
        assert sorted(batch) == list(range(min(batch), max(batch) + 1))      # neighbours in length order


def test_stopped_run_resumes_where_it_left_off(data_dir, tmp_path):
    kwargs = dict(steps=6, frames_per_batch=200, max_batch=4, config=TINY, checkpoint_every=3, progress=False,
                  warmup_steps=2, log_every=1)
    whole = train_tts(data_dir, tmp_path / "whole", **kwargs)
    assert whole["step"] == 6
    first = train_tts(data_dir, tmp_path / "split", max_steps_this_run=4, **kwargs)
    assert first["step"] == 4
    second = train_tts(data_dir, tmp_path / "split", **kwargs)
    assert second["step"] == 6
    a = load_file(str(tmp_path / "whole" / "checkpoint.safetensors"))
    b = load_file(str(tmp_path / "split" / "checkpoint.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    log = [json.loads(line) for line in (tmp_path / "whole" / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4, 5, 6]
    metrics = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [3, 6] and set(metrics[-1]["valid"]) == {"flow", "prior", "duration"}
    model = load_tts_model(tmp_path / "whole" / "tts.safetensors")
    assert model.config.default_prompt_frames > 0                     # the built-in voice (speaker 'a')
    assert torch.isfinite(model.default_prompt).all()


def test_checkpoint_of_another_run_is_refused(data_dir, tmp_path):
    kwargs = dict(steps=2, frames_per_batch=200, max_batch=4, progress=False, checkpoint_every=2)
    train_tts(data_dir, tmp_path / "run", config=TINY, **kwargs)
    with pytest.raises(SDSAudioError, match="another run"):
        train_tts(data_dir, tmp_path / "run", config=TINY.replace(width=32), **kwargs)
    with pytest.raises(SDSAudioError, match="default voice"):
        train_tts(data_dir, tmp_path / "run2", config=TINY, default_voice="nobody", **kwargs)


def test_log_mel_model_trains_from_a_warm_start_and_speaks(data_dir, tmp_path):
    from sds_audio.tts import load_tts
    from sds_audio.tts.train import warm_start

    kwargs = dict(steps=2, frames_per_batch=200, max_batch=4, progress=False, checkpoint_every=2)
    train_tts(data_dir, tmp_path / "codec", config=TINY, **kwargs)
    mel = TTSConfig.for_mel(symbols="characters", text_width=16, text_depth=1, text_heads=2, text_convs=1,
                            duration_width=16, width=16, depth=1, heads=2, time_features=16)
    entry = train_tts(data_dir, tmp_path / "mel", config=mel, init_from=tmp_path / "codec" / "tts.safetensors",
                      **kwargs)
    assert entry["step"] == 2 and all(np.isfinite(v) for v in entry["valid"].values())
    speaker = load_tts(tmp_path / "mel" / "tts.safetensors")
    assert speaker.model.config.features == "mel" and speaker.model.config.latent_channels == 80
    audio, rate = speaker.speak("a cat", steps=2)
    assert rate == 22050 and audio.ndim == 1 and audio.shape[0] > 512 and torch.isfinite(audio).all()
    with pytest.raises(SDSAudioError, match="codec does not apply"):
        load_tts(tmp_path / "mel" / "tts.safetensors", codec=tmp_path / "codec" / "tts.safetensors")
    # the warm start copies what fits (transformer blocks) and leaves the frame projections fresh
    codec_model = load_tts_model(tmp_path / "codec" / "tts.safetensors")
    fresh = TTSModel(mel)
    copied = warm_start(fresh, tmp_path / "codec" / "tts.safetensors")
    state, source = fresh.state_dict(), codec_model.state_dict()
    assert copied and all(torch.equal(state[k], source[k].float()) for k in copied)
    skipped = [k for k in state if k in source and state[k].shape != source[k].shape]
    assert skipped and not set(skipped) & set(copied)
    with pytest.raises(SDSAudioError, match="not an sds-audio tts model"):
        warm_start(fresh, tmp_path / "mel" / "checkpoint.safetensors")
