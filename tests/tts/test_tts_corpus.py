"""The speech corpus: sentence selection, the LJSpeech-layout round trip, the latent cache, the codec manifest."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import soundfile as sf

from sds_audio.corpus.speech import build_speech_corpus, plan_utterances, trim_silence
from sds_audio.corpus.speech_text import extract_sentences, keep_sentence
from sds_audio.errors import SDSAudioError
from sds_audio.tts.data import build_cache, read_ljspeech
from sds_audio.tts.frontend import Frontend
from sds_audio.tts.normalize import normalize_text

SENTENCES = ["The cat sat on the mat.", "Dr. Brown paid 3 dollars.", "Where did you go today?",
             "Rain fell on the quiet town.", "We sing, and they listen!", "Bread is baked at dawn."]


def test_sentence_selection_rules():
    assert keep_sentence("God saw the light, and saw that it was good.")
    assert not keep_sentence("and his disciples heard it.")                 # fragment: no capital
    assert not keep_sentence("He paid 30 shekels of silver.")               # digits
    assert not keep_sentence("Go now.")                                     # under four words
    assert not keep_sentence("Abram went with Lot and Sarai to Canaan.")    # names
    verses = ["In the beginning, God created the heavens. \u201cLet there be light,\u201d he said to them!",
              "In the beginning, God created the heavens. It was good (very)."]
    assert extract_sentences(verses) == ["In the beginning, God created the heavens.",
                                         "Let there be light, he said to them!"]


def test_trim_silence_keeps_the_margin():
    rate = 16000
    audio = np.zeros(rate * 2, dtype=np.float32)
    audio[8000:16000] = 0.5 * np.sin(np.arange(8000) * 0.3)
    out = trim_silence(audio, rate, margin_s=0.1)
    assert len(out) == 8000 + 2 * 1600
    assert np.abs(out[:1600]).max() == 0 and np.abs(out[1600:1700]).max() > 0.1
    assert len(trim_silence(np.zeros(100, dtype=np.float32), rate)) == 100     # nothing audible: unchanged


def test_plan_splits_by_sentence_and_holds_voices_out():
    rows = plan_utterances(SENTENCES, n_train=4, n_valid=1, n_test=1, train_voices=["a", "b"],
                           heldout_voices=["c"], seed=0)
    by_split = {s: [r for r in rows if r["split"] == s] for s in ("train", "valid", "test")}
    assert [len(by_split[s]) for s in ("train", "valid", "test")] == [4, 3, 3]
    assert {r["speaker"] for r in by_split["train"]} == {"a", "b"}              # the held-out voice never trains
    train_text = {r["text"] for r in by_split["train"]}
    assert not train_text & {r["text"] for r in by_split["test"] + by_split["valid"]}
    assert len(train_text) == 4 and len({r["id"] for r in rows}) == len(rows)
    with pytest.raises(SDSAudioError, match="sentences"):
        plan_utterances(SENTENCES, 10, 1, 1, ["a"], [], 0)


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("flite") is None,
                    reason="flite and espeak-ng are not installed")
def test_corpus_round_trip_and_cache(tmp_path):
    out = tmp_path / "corpus"
    summary = build_speech_corpus(out, n_train=4, n_valid=1, n_test=1, train_voices=["kal", "espeak-m"],
                                  heldout_voices=["espeak-f"], seed=1, workers=1, progress=False,
                                  sentences=SENTENCES)
    assert summary.n_utterances == 4 + 3 + 3 and summary.n_sentences == 6
    lines = (out / "metadata.csv").read_text().splitlines()
    assert all(len(line.split("|")) == 3 for line in lines)
    for line in lines:
        uid, text, normalized = line.split("|")
        assert text in SENTENCES and normalized == normalize_text(text)
    utterances = read_ljspeech(out)
    assert [u.id for u in utterances] == [line.split("|")[0] for line in lines]
    assert {u.speaker for u in utterances if u.split == "train"} == {"kal", "espeak-m"}
    info = json.loads((out / "corpus.json").read_text())
    assert info["heldout_voices"] == ["espeak-f"] and "public domain" in info["text_licence"]
    total_s = 0.0
    for u in utterances:
        data, rate = sf.read(str(u.wav))
        assert rate == (8000 if u.speaker == "kal" else 22050) and 0.5 < len(data) / rate < 6
        total_s += len(data) / rate
    assert abs(total_s / 3600 - sum(info["hours"].values())) < 1e-3
    # the cache: symbols of the normalised text, one latent frame per 512 samples at 22.05 kHz
    from sds_audio.codec import load_codec
    from sds_audio.tts.features import CodecFeatures

    codec = CodecFeatures(load_codec())
    frontend = Frontend("characters")
    cache = build_cache(out, tmp_path / "cache.safetensors", codec, frontend, progress=False)
    for i, u in enumerate(utterances):
        symbols, latents = cache.item(i)
        assert frontend.decode(symbols.tolist()) == frontend.decode(frontend.encode(u.text))
        n = sf.info(str(u.wav)).frames * 22050 / sf.info(str(u.wav)).samplerate
        assert abs(latents.shape[-1] - math.ceil(n / 512)) <= 1 and latents.shape[0] == 64
    assert cache.splits == [u.split for u in utterances]
    stamp = (tmp_path / "cache.safetensors").stat().st_mtime_ns
    again = build_cache(out, tmp_path / "cache.safetensors", codec, frontend, progress=False)
    assert (tmp_path / "cache.safetensors").stat().st_mtime_ns == stamp and again.ids == cache.ids
    # the codec trainer's view of the same directory
    from sds_audio.corpus.dataset import read_manifest
    from sds_audio.tts.vocoder import write_codec_manifest

    records = read_manifest(write_codec_manifest(out, tmp_path / "manifest"))
    assert len(records) == 7 and {r["split"] for r in records} == {"train", "heldout"}


def test_plain_ljspeech_directory(tmp_path):
    (tmp_path / "wavs").mkdir()
    (tmp_path / "metadata.csv").write_text("LJ001-0001|Printing, in 1 sense|Printing, in one sense\n"
                                           "LJ001-0002|only text\n")
    utterances = read_ljspeech(tmp_path)
    assert [(u.id, u.text, u.speaker) for u in utterances] == [("LJ001-0001", "Printing, in one sense", "default"),
                                                               ("LJ001-0002", "only text", "default")]
    (tmp_path / "metadata.csv").write_text("a|x\na|y\n")
    with pytest.raises(SDSAudioError, match="twice"):
        read_ljspeech(tmp_path)
    with pytest.raises(SDSAudioError, match="metadata.csv"):
        read_ljspeech(tmp_path / "wavs")
