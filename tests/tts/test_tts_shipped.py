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


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("flite") is None,
                    reason="espeak-ng and flite are not installed")
def test_shipped_model_adapted_to_an_unseen_voice_sounds_like_it(tmp_path):
    """`rms` (flite) is the voice held out of training: the in-context prompt speaks it as a training
    voice; the adapted copy should be nearest to `rms` by the frame-level GMM measure."""
    pytest.importorskip("sklearn", reason="scikit-learn (dev extra) is not installed")
    import subprocess

    from sds_audio.audio_io import load_audio
    from sds_audio.tts import load_tts
    from sds_audio.tts.evaluation import VoiceGMMs

    sentences = ["The morning light fell across the quiet valley.", "He carried the water up the hill twice.",
                 "Nobody knew where the old road used to lead.", "Please bring the books back before noon."]
    tts = load_tts()

    def flite(voice: str, text: str, name: str) -> torch.Tensor:
        wav = tmp_path / f"{name}.wav"
        subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(wav)], check=True, capture_output=True)
        audio, _ = load_audio(wav, sample_rate=tts.sample_rate, channels=1)
        with torch.no_grad():                                       # through the vocoder, as the outputs are
            return tts.features.decode(tts.features.encode(audio))[0, 0]

    voices = ("rms", "awb", "slt", "kal16")
    gmms = VoiceGMMs({v: [flite(v, s, f"{v}{i}") for i, s in enumerate(sentences[:3])] for v in voices},
                     tts.sample_rate)
    reference = tmp_path / "reference.wav"
    subprocess.run(["flite", "-voice", "rms", "-t", sentences[3], "-o", str(reference)], check=True,
                   capture_output=True)
    adapted = tts.adapt(reference, sentences[3])
    audio, rate = adapted.speak("Every evening the children walked home along the river.", seed=0)
    assert gmms.nearest(audio, rate) == "rms"
