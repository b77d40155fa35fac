"""``sds-audio corpus speech OUT_DIR``: an LJSpeech-layout speech corpus spoken by offline synthesisers.

Layout written (and read by :mod:`sds_audio.tts.data`, which also takes a plain LJSpeech directory)::

    OUT_DIR/wavs/<id>.wav      16-bit mono, the voice's own rate (8 or 16 kHz flite, 22.05 kHz espeak-ng)
    OUT_DIR/metadata.csv       id|text|normalized_text          (LJSpeech's three columns, '|' separated)
    OUT_DIR/speakers.csv       id|speaker|split                 (split: train, valid or test)
    OUT_DIR/corpus.json        voices, text source and licence, counts, settings

Sentences come from :mod:`sds_audio.corpus.speech_text` (public domain), are
shuffled with ``seed`` and split by sentence: the first ``n_test`` are the test
set, the next ``n_valid`` the validation set, the next ``n_train`` the training
set. Every training sentence is spoken by one training voice (round robin), so
each voice reads different text; validation and test sentences are spoken by
every voice, the held-out voices included, which speak nothing else (their
test utterances are the voice prompts of the benchmark). Ids are
``<voice>-<sentence number>``, so one sentence has the same number in every voice.

Leading and trailing silence is trimmed to ``MARGIN_S`` (:func:`trim_silence`).
The same arguments give the same files: the renderers are deterministic.
"""

from __future__ import annotations

import concurrent.futures as futures
import datetime
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from ..atomic import write_json_atomic, write_text_atomic
from ..errors import SDSAudioError
from ..tts.normalize import normalize_text
from .speech_text import LICENCE, SOURCE_NAME, extract_sentences, read_web_verses

MARGIN_S = 0.1
SILENCE_DB = -40.0


@dataclass(frozen=True)
class Voice:
    """One offline synthetic voice.

    Attributes:
        name: the corpus speaker name.
        engine: ``"flite"`` or ``"espeak-ng"``.
        voice: the engine's voice argument.
        package: the Debian package that provides it.
        description: who it is (for the corpus card).
    """

    name: str
    engine: str
    voice: str
    package: str
    description: str

    def command(self, text: str, wav_path: str) -> list[str]:
        if self.engine == "flite":
            return ["flite", "-voice", self.voice, "-t", text, "-o", wav_path]
        return ["espeak-ng", "-v", self.voice, "-w", wav_path, "--", text]


VOICES = {v.name: v for v in (
    Voice("kal", "flite", "kal", "flite", "CMU Kal diphone voice, US English male, 8 kHz"),
    Voice("kal16", "flite", "kal16", "flite", "CMU Kal diphone voice, US English male, 16 kHz"),
    Voice("awb", "flite", "awb", "flite", "CMU ARCTIC awb clustergen voice, Scottish English male, 16 kHz"),
    Voice("rms", "flite", "rms", "flite", "CMU ARCTIC rms clustergen voice, US English male, 16 kHz"),
    Voice("slt", "flite", "slt", "flite", "CMU ARCTIC slt clustergen voice, US English female, 16 kHz"),
    Voice("espeak-m", "espeak-ng", "en-us", "espeak-ng", "espeak-ng en-us formant voice, male, 22.05 kHz"),
    Voice("espeak-f", "espeak-ng", "en-us+f3", "espeak-ng",
          "espeak-ng en-us formant voice with the f3 (female) variant, 22.05 kHz"),
)}
TRAIN_VOICES = ("kal", "kal16", "awb", "slt", "espeak-m", "espeak-f")
HELDOUT_VOICES = ("rms",)


def trim_silence(audio: np.ndarray, sample_rate: int, margin_s: float = MARGIN_S,
                 threshold_db: float = SILENCE_DB) -> np.ndarray:
    """Cut leading / trailing silence, keeping ``margin_s`` around the audible part.

    Args:
        audio: ``(T,)`` float samples.
        threshold_db: a 10 ms frame is audible when its RMS is above this, relative to the loudest frame.

    Returns:
        ``(T',)`` the trimmed samples (the input unchanged when nothing is audible).
    """
    frame = max(1, int(0.01 * sample_rate))
    n = len(audio) // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[:n * frame].reshape(n, frame) ** 2, axis=1) + 1e-20)
    loud = np.nonzero(20 * np.log10(rms / rms.max()) > threshold_db)[0]
    if rms.max() <= 1e-9 or len(loud) == 0:
        return audio
    margin = int(margin_s * sample_rate)
    start = max(0, loud[0] * frame - margin)
    end = min(len(audio), (loud[-1] + 1) * frame + margin)
    return audio[start:end]


def require_voices(voices: list[str]) -> None:
    """Raise :class:`SDSAudioError` if a voice is unknown or its program is not installed."""
    for name in voices:
        if name not in VOICES:
            raise SDSAudioError(f"unknown voice {name!r}; known voices: {', '.join(VOICES)}")
        engine = VOICES[name].engine
        if shutil.which(engine) is None:
            raise SDSAudioError(f"{engine} is not installed (voice {name}): `apt-get install {VOICES[name].package}`")


def render_utterance(voice: Voice, text: str, wav_path: Path) -> float:
    """Speak ``text`` with ``voice`` into ``wav_path`` (trimmed, 16-bit); returns the duration in seconds."""
    with tempfile.TemporaryDirectory(prefix="sds-speech-") as tmp:
        raw = Path(tmp) / "raw.wav"
        try:
            subprocess.run(voice.command(text, str(raw)), check=True, capture_output=True, timeout=120)
            audio, sr = sf.read(str(raw), dtype="float32", always_2d=True)
        except (OSError, subprocess.SubprocessError, sf.LibsndfileError) as exc:
            raise SDSAudioError(f"{voice.engine} failed for voice {voice.name} on {text[:40]!r}: {exc}") from exc
    audio = trim_silence(audio.mean(axis=1), sr)
    tmp_path = wav_path.with_suffix(".tmp.wav")
    sf.write(str(tmp_path), audio, sr, subtype="PCM_16")
    tmp_path.replace(wav_path)
    return len(audio) / sr


@dataclass
class SpeechCorpusSummary:
    """What :func:`build_speech_corpus` wrote."""

    out_dir: Path
    n_utterances: int
    n_sentences: int
    hours: dict[str, float]
    seconds: float


def plan_utterances(sentences: list[str], n_train: int, n_valid: int, n_test: int, train_voices: list[str],
                    heldout_voices: list[str], seed: int) -> list[dict]:
    """The utterances to render: ``{"id", "text", "speaker", "split"}`` (see the module docstring).

    Raises:
        SDSAudioError: fewer sentences than asked for, or no training voice.
    """
    need = n_train + n_valid + n_test
    if len(sentences) < need:
        raise SDSAudioError(f"the text source has {len(sentences)} sentences; asked for {need}")
    if not train_voices:
        raise SDSAudioError("give at least one training voice")
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    rows = []
    for rank, index in enumerate(order[:need]):
        if rank < n_test + n_valid:
            split = "test" if rank < n_test else "valid"
            speakers = list(train_voices) + list(heldout_voices)
        else:
            split = "train"
            speakers = [train_voices[(rank - n_test - n_valid) % len(train_voices)]]
        for speaker in speakers:
            rows.append({"id": f"{speaker}-{rank:05d}", "text": sentences[index], "speaker": speaker, "split": split})
    return rows


def write_metadata(out_dir: Path, rows: list[dict]) -> None:
    """Write ``metadata.csv`` (id|text|normalized_text) and ``speakers.csv`` (id|speaker|split) atomically."""
    meta = "".join(f"{r['id']}|{r['text']}|{normalize_text(r['text'])}\n" for r in rows)
    speakers = "".join(f"{r['id']}|{r['speaker']}|{r['split']}\n" for r in rows)
    write_text_atomic(out_dir / "metadata.csv", meta)
    write_text_atomic(out_dir / "speakers.csv", speakers)


def build_speech_corpus(out_dir: str | Path, n_train: int = 8000, n_valid: int = 100, n_test: int = 150,
                        train_voices: list[str] | tuple[str, ...] = TRAIN_VOICES,
                        heldout_voices: list[str] | tuple[str, ...] = HELDOUT_VOICES, seed: int = 0,
                        workers: int = 2, progress: bool = True,
                        sentences: list[str] | None = None) -> SpeechCorpusSummary:
    """Render the corpus into ``out_dir`` (created; existing wavs of the same id are kept, so a stopped
    build resumes).

    Args:
        sentences: the text to read (default: :func:`~sds_audio.corpus.speech_text.extract_sentences` of
            the WEB).

    Raises:
        SDSAudioError: a tool, voice or the text source is missing; too few sentences.
    """
    import time

    start = time.time()
    train_voices, heldout_voices = list(train_voices), list(heldout_voices)
    if set(train_voices) & set(heldout_voices):
        raise SDSAudioError(f"voices {sorted(set(train_voices) & set(heldout_voices))} are both training and "
                            "held-out voices")
    require_voices(train_voices + heldout_voices)
    if sentences is None:
        sentences = extract_sentences(read_web_verses())
    rows = plan_utterances(sentences, n_train, n_valid, n_test, train_voices, heldout_voices, seed)
    out_dir = Path(out_dir)
    wav_dir = out_dir / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)

    def job(row: dict) -> float:
        path = wav_dir / f"{row['id']}.wav"
        if path.is_file():
            return sf.info(str(path)).duration
        return render_utterance(VOICES[row["speaker"]], row["text"], path)

    durations: dict[str, float] = {}
    with futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(job, rows)
        for row, duration in tqdm(zip(rows, results), total=len(rows), desc="speech corpus", disable=not progress):
            durations[row["id"]] = duration
    write_metadata(out_dir, rows)
    hours: dict[str, float] = {}
    for row in rows:
        key = f"{row['speaker']}/{row['split']}"
        hours[key] = hours.get(key, 0.0) + durations[row["id"]] / 3600.0
    info = {
        "format": "LJSpeech layout: wavs/<id>.wav, metadata.csv (id|text|normalized_text), "
                  "speakers.csv (id|speaker|split)",
        "text_source": SOURCE_NAME, "text_licence": LICENCE,
        "voices": {name: VOICES[name].__dict__ for name in train_voices + heldout_voices},
        "train_voices": train_voices, "heldout_voices": heldout_voices,
        "n_train_sentences": n_train, "n_valid_sentences": n_valid, "n_test_sentences": n_test,
        "n_utterances": len(rows), "hours": {k: round(v, 4) for k, v in sorted(hours.items())},
        "seed": seed, "built": datetime.date.today().isoformat(),
    }
    write_json_atomic(out_dir / "corpus.json", info)
    return SpeechCorpusSummary(out_dir, len(rows), n_train + n_valid + n_test, hours, time.time() - start)


__all__ = ["HELDOUT_VOICES", "TRAIN_VOICES", "VOICES", "SpeechCorpusSummary", "Voice", "build_speech_corpus",
           "plan_utterances", "render_utterance", "require_voices", "trim_silence", "write_metadata"]
