"""Voice adaptation (``sds_audio.tts.adapt``, ``SpeechSynthesizer.adapt``, ``sds-audio tts --voice-text``) on a
tiny random model, and the GMM voice measure on synthetic voices."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_tts import write_tiny_tts  # tests/ is on pytest's pythonpath

from sds_audio.cli import main
from sds_audio.errors import SDSAudioError
from sds_audio.tts import TTSConfig, TTSModel, load_tts
from sds_audio.tts.adapt import AdaptConfig, adapt_model, trainable_parameters

TINY = TTSConfig.for_mel(symbols="characters", text_width=16, text_depth=1, text_heads=2, text_convs=1,
                         duration_width=16, width=16, depth=1, heads=2, time_features=16)


def speech_like(seconds: float, rate: int = 22050, f0: float = 140.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (0.3 * envelope * np.sin(2 * np.pi * f0 * t) * (1 + 0.5 * np.sin(2 * np.pi * 5 * f0 * t))).astype(np.float32)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_tiny_tts(tmp_path_factory.mktemp("tts") / "tts.safetensors", TINY)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("voice") / "ref.wav"
    sf.write(str(path), speech_like(3.0), 22050)
    return path


def flow_loss(model: TTSModel, frames: torch.Tensor, symbols: torch.Tensor) -> float:
    """The flow loss on the reference, averaged over a fixed set of draws."""
    b = 16
    with torch.no_grad():
        return float(model.losses(symbols[None].expand(b, -1), torch.full((b,), len(symbols)),
                                  frames[None].expand(b, -1, -1), torch.full((b,), frames.shape[-1]),
                                  torch.Generator().manual_seed(123)).flow)


@pytest.mark.parametrize("part", ["decoder", "modulation"])
def test_adaptation_fits_the_reference_and_moves_only_its_part(weights, reference, part):
    speaker = load_tts(weights)
    frames = speaker.voice(reference)
    symbols = torch.tensor(speaker.frontend.encode("hello there, how are you"))
    before = {n: p.clone() for n, p in speaker.model.named_parameters()}
    adapted = adapt_model(speaker.model, frames, symbols, AdaptConfig(steps=40, lr=3e-3, part=part))
    # the original is untouched, the copy moved only the chosen parameters
    assert all(torch.equal(p, before[n]) for n, p in speaker.model.named_parameters())
    moved = {id(p) for p in trainable_parameters(adapted, part)}
    changed = {n for n, p in adapted.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(id(dict(adapted.named_parameters())[n]) in moved for n in changed)
    assert all(n.startswith("decoder.") for n in changed)
    if part == "modulation":
        assert not any(".attn." in n or ".mlp." in n for n in changed)
    assert flow_loss(adapted, frames, symbols) < flow_loss(speaker.model, frames, symbols)
    assert not any(p.requires_grad for p in adapted.parameters())
    again = adapt_model(speaker.model, frames, symbols, AdaptConfig(steps=40, lr=3e-3, part=part))
    assert all(torch.equal(p, q) for p, q in zip(adapted.parameters(), again.parameters()))   # seeded


def test_adapted_synthesiser_speaks_in_the_reference_voice_by_default(weights, tmp_path):
    speaker = load_tts(weights)
    reference = tmp_path / "six_seconds.wav"           # longer than the 4 s an in-context prompt keeps
    sf.write(str(reference), speech_like(6.0), 22050)
    adapted = speaker.adapt(reference, "hello there, how are you", steps=2)
    assert torch.equal(adapted.model.default_prompt, speaker.voice(reference))
    assert adapted.model.config.default_prompt_frames == 173         # 4 s at 22050 / 512 frames per second
    assert adapted.model is not speaker.model and speaker.model.config.default_prompt_frames == 20
    audio, rate = adapted.speak("good morning", steps=2)
    assert rate == 22050 and audio.numel() > 0 and torch.isfinite(audio).all()


def test_adaptation_bad_inputs(weights, reference, tmp_path):
    speaker = load_tts(weights)
    with pytest.raises(SDSAudioError, match="transcript is empty"):
        speaker.adapt(reference, "  ")
    with pytest.raises(SDSAudioError, match="transcript of the reference"):
        speaker.adapt(reference, "word " * 100)                       # more symbols than 3 s has frames
    long = tmp_path / "long.wav"
    sf.write(str(long), speech_like(12.0), 22050)
    with pytest.raises(SDSAudioError, match="at most 10 s"):
        speaker.adapt(long, "hello")
    assert speaker.voice(long).shape[-1] == 173                 # an in-context prompt is cut, not refused
    ten = tmp_path / "ten.wav"
    sf.write(str(ten), speech_like(9.9), 22050)
    assert speaker.adapt(ten, "hello there, how are you", steps=1).model.default_prompt.shape[-1] == 173
    for bad in ({"steps": -1}, {"lr": 0.0}, {"part": "all"}, {"batch": 0}):
        with pytest.raises(SDSAudioError):
            AdaptConfig(**bad)


def test_cli_voice_text(weights, reference, tmp_path, capsys):
    out = tmp_path / "out.wav"
    assert main(["tts", "hello", "-o", str(out), "--weights", str(weights), "--voice-text", "hello"]) == 2
    assert main(["tts", "hello", "-o", str(out), "--weights", str(weights), "--voice", str(reference),
                 "--voice-text", "word " * 100]) == 2
    assert main(["tts", "hello", "-o", str(out), "--weights", str(weights), "--voice", str(reference),
                 "--adapt-steps", "5"]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and all(line.startswith("sds-audio: error: ") for line in err.splitlines())
    assert main(["tts", "good morning", "-o", str(out), "--weights", str(weights), "--voice", str(reference),
                 "--voice-text", "hello there, how are you", "--adapt-steps", "2", "--steps", "2", "--quiet"]) == 0
    assert sf.info(str(out)).frames > 0
    assert "adapted to" in capsys.readouterr().out


def test_gmm_measure_tells_synthetic_voices_apart():
    pytest.importorskip("sklearn", reason="scikit-learn (dev extra) is not installed")
    from sds_audio.tts.evaluation import VoiceGMMs

    rate = 16000
    rng = np.random.default_rng(0)

    def voice(f0: float, seconds: float) -> np.ndarray:
        return speech_like(seconds, rate, f0 * (1 + 0.02 * rng.standard_normal())) + \
            0.01 * rng.standard_normal(int(seconds * rate)).astype(np.float32)

    gmms = VoiceGMMs({"low": [voice(110, 2.0) for _ in range(3)], "high": [voice(260, 2.0) for _ in range(3)]},
                     rate, components=4)
    assert gmms.nearest(voice(110, 1.5), rate) == "low"
    assert gmms.nearest(voice(260, 1.5), rate) == "high"
    s = gmms.scores(voice(110, 1.5), rate)
    assert set(s) == {"low", "high"} and s["low"] > s["high"]
