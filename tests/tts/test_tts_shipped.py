"""The shipped speech model (``sds_audio/assets/tts.safetensors``): what it is and that it runs.

Its intelligibility and voice prompting are measured by ``benchmarks/tts.py`` (model card:
``sds_audio/assets/tts.md``); these are the cheap checks a broken or mixed-up file would fail.
"""

from __future__ import annotations

import shutil

import pytest
import torch

from sds_audio.tts.weights import default_tts_path, load_tts_model, tts_metadata

pytestmark = pytest.mark.skipif(not default_tts_path().is_file(), reason="no shipped tts.safetensors")
ASSETS = default_tts_path().parent


def test_shipped_files_are_small_and_documented():
    total = sum(p.stat().st_size for p in ASSETS.glob("tts*.safetensors"))
    assert total <= 40 * 2 ** 20
    assert (ASSETS / "tts.md").is_file()
    codec = tts_metadata(default_tts_path()).get("codec")
    assert codec is None or (ASSETS / codec).is_file()


def test_shipped_model_is_the_default_architecture_with_a_voice():
    from sds_audio.tts import TTSConfig

    model = load_tts_model()
    assert model.config == TTSConfig.for_mel(default_prompt_frames=model.config.default_prompt_frames)
    assert 40 <= model.config.default_prompt_frames <= 200          # about 1-4.6 s at 43 frames/s
    assert torch.isfinite(model.default_prompt).all() and float(model.default_prompt.std()) > 0.3


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_shipped_model_speaks_a_sentence_of_plausible_length():
    from sds_audio.tts import load_tts

    tts = load_tts()
    audio, rate = tts.speak("Good morning, how are you today?", steps=8, seed=0)
    seconds = audio.shape[-1] / rate
    assert rate == 22050 and 1.0 < seconds < 4.5                    # flite voices read it in about 2 s
    assert torch.isfinite(audio).all() and float(audio.pow(2).mean().sqrt()) > 0.01


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_shipped_model_is_understood_by_the_recogniser():
    pytest.importorskip("pocketsphinx", reason="pocketsphinx (dev extra) is not installed")
    from sds_audio.tts import load_tts
    from sds_audio.tts.evaluation import recognize, wer

    tts = load_tts()
    text = "Good morning, how are you today?"
    heard = [recognize(*tts.speak(text, seed=seed)) for seed in range(3)]
    assert wer([text] * 3, heard) <= 0.25          # 2026-12-07 weights: 1 word wrong in 18
