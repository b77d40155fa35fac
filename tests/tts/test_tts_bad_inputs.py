"""Bad inputs of the speech API and command: one-line errors, the right exit codes, nothing half-written."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from tiny_tts import write_tiny_tts  # tests/ is on pytest's pythonpath

from sds_audio.cli import main
from sds_audio.errors import SDSAudioError
from sds_audio.tts import TTSConfig, load_tts
from sds_audio.tts.infer import MAX_TEXT_CHARS
from sds_audio.tts.weights import load_tts_model

TINY = TTSConfig(symbols="characters", text_width=16, text_depth=1, text_heads=2, text_convs=1, duration_width=16,
                 width=16, depth=1, heads=2, time_features=16)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return write_tiny_tts(tmp_path_factory.mktemp("tts") / "tts.safetensors", TINY)


@pytest.fixture(scope="module")
def speaker(weights):
    return load_tts(weights)


def speech_like(seconds: float, rate: int = 22050, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    return (level * envelope * np.sin(2 * np.pi * 140 * t) * (1 + 0.5 * np.sin(2 * np.pi * 700 * t))).astype(np.float32)


def test_weights_round_trip_and_synthesis_is_seeded(weights, speaker):
    model = load_tts_model(weights)
    assert model.config == TINY.replace(default_prompt_frames=20)
    a, rate = speaker.speak("Hello there. Good bye.", steps=2, seed=3)
    b, _ = speaker.speak("Hello there. Good bye.", steps=2, seed=3)
    assert rate == 22050 and torch.equal(a, b) and float(a.abs().max()) <= 0.99


@pytest.mark.parametrize("text", ["", "   \n "])
def test_empty_text(speaker, text):
    with pytest.raises(SDSAudioError, match="empty"):
        speaker.speak(text)


def test_text_over_the_limit(speaker):
    with pytest.raises(SDSAudioError, match="limit"):
        speaker.speak("word " * (MAX_TEXT_CHARS // 5 + 1))
    with pytest.raises(SDSAudioError, match="cannot be split"):
        speaker.speak("Fine. " + "x" * 500)
    audio, rate = speaker.speak("Long, " * 100 + "end.", steps=1)   # long but splittable: spoken in pieces
    assert audio.shape[-1] > 0


@pytest.mark.parametrize("kwargs, match", [({"speed": 3.0}, "speed"), ({"steps": 0}, "steps"),
                                           ({"guidance": -1.0}, "guidance")])
def test_bad_settings(speaker, kwargs, match):
    with pytest.raises(SDSAudioError, match=match):
        speaker.speak("hello", **kwargs)


def test_voice_prompts(speaker, tmp_path):
    silent = tmp_path / "silent.wav"
    sf.write(str(silent), np.zeros(22050 * 3, dtype=np.float32), 22050)
    with pytest.raises(SDSAudioError, match="silent"):
        speaker.speak("hello", voice=silent)
    quiet = tmp_path / "quiet.wav"
    sf.write(str(quiet), speech_like(3.0, level=1e-4), 22050)
    with pytest.raises(SDSAudioError, match="silent"):
        speaker.speak("hello", voice=quiet)
    short = tmp_path / "short.wav"
    sf.write(str(short), speech_like(1.0), 22050)
    with pytest.raises(SDSAudioError, match="at least 2 s"):
        speaker.speak("hello", voice=short)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wav")
    with pytest.raises(SDSAudioError):
        speaker.speak("hello", voice=broken)
    good = tmp_path / "good.wav"
    sf.write(str(good), speech_like(6.0, 16000), 16000)
    prompt = speaker.voice(good)
    assert prompt.shape == (TINY.latent_channels, 173)        # cut to 4 s at 22050 / 512 frames per second
    audio, _ = speaker.speak("hello", voice=good, steps=2)
    assert audio.numel() > 0 and torch.isfinite(audio).all()


def test_missing_truncated_and_foreign_weights(weights, tmp_path):
    with pytest.raises(SDSAudioError, match="do not exist") as err:
        load_tts(tmp_path / "nope.safetensors")
    assert err.value.exit_code == 1
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(SDSAudioError) as err:
        load_tts(truncated)
    assert err.value.exit_code == 1
    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"x": torch.zeros(2)}, str(foreign))
    with pytest.raises(SDSAudioError, match="not an sds-audio tts model"):
        load_tts(foreign)


def test_cli_exit_codes_and_no_partial_output(weights, tmp_path, capsys):
    out = tmp_path / "out.wav"
    assert main(["tts", "   ", "-o", str(out), "--weights", str(weights)]) == 2
    assert main(["tts", "hello", "-o", str(out), "--weights", str(tmp_path / "missing.safetensors")]) == 1
    short = tmp_path / "short.wav"
    sf.write(str(short), speech_like(0.5), 22050)
    assert main(["tts", "hello", "-o", str(out), "--weights", str(weights), "--voice", str(short)]) == 2
    assert not out.exists() and list(tmp_path.glob(".out.wav*")) == []
    err = capsys.readouterr().err
    assert err.count("\n") == 3 and all(line.startswith("sds-audio: error: ") for line in err.splitlines())
    assert main(["tts", "Hello, 2 worlds.", "-o", str(out), "--weights", str(weights), "--steps", "2",
                 "--quiet"]) == 0
    info = sf.info(str(out))
    assert info.samplerate == 22050 and info.subtype == "PCM_24" and info.frames > 0
    assert main(["tts", "hello", "-o", str(out), "--weights", str(weights)]) == 2      # exists, no --overwrite
