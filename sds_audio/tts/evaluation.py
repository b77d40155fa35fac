"""Measuring speech: word error rate through an offline recogniser, and two voice-similarity measures.

- :func:`recognize`: ``pocketsphinx`` 5.x (its wheel ships the US English
  acoustic model, dictionary and language model; a benchmark / test dependency,
  in the ``dev`` extra) on 16 kHz 16-bit audio;
- :func:`words` / :func:`word_errors` / :func:`wer`: the reference and the
  hypothesis are normalised alike (:func:`~sds_audio.tts.normalize.normalize_text`,
  lowercase, hyphens split, other punctuation dropped), then the word-level
  Levenshtein distance is divided by the reference's word count;
- :func:`voice_embedding`: per-band mean and standard deviation of a 40-band
  log-mel spectrogram (80 numbers: the long-term spectral envelope and its
  spread, which is what separates these voices), and :class:`VoiceCentroids`,
  which standardises embeddings with the statistics of known voices and assigns a
  recording to the voice whose mean embedding is nearest in cosine distance.
"""

from __future__ import annotations

import functools
import math
import re

import numpy as np
import torch
import torchaudio

from ..errors import SDSAudioError
from .normalize import normalize_text

ASR_RATE = 16000
_WORD_RE = re.compile(r"[a-z']+")


def words(text: str) -> list[str]:
    """Normalised lowercase words of ``text`` (numbers spelled out, punctuation dropped)."""
    return _WORD_RE.findall(normalize_text(text).lower().replace("-", " "))


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """``(substitutions + deletions + insertions, reference words)`` between two texts."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row = row, [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h))
    return row[len(hyp)], len(ref)


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus word error rate: total errors over total reference words."""
    errors = total = 0
    for ref, hyp in zip(references, hypotheses, strict=True):
        e, n = word_errors(ref, hyp)
        errors += e
        total += n
    return errors / max(total, 1)


@functools.lru_cache(maxsize=1)
def _decoder():
    try:
        from pocketsphinx import Decoder
    except ImportError as exc:
        raise SDSAudioError("the recogniser needs pocketsphinx: `pip install -e '.[dev]'` (or `pip install "
                            "pocketsphinx`)") from exc
    return Decoder(loglevel="FATAL")


def recognize(audio: torch.Tensor | np.ndarray, sample_rate: int) -> str:
    """Transcript of mono ``audio`` ``(T,)`` by pocketsphinx's default US English models ('' when nothing)."""
    x = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
    if sample_rate != ASR_RATE:
        x = torchaudio.functional.resample(x, sample_rate, ASR_RATE)
    peak = float(x.abs().max()) if x.numel() else 0.0
    if peak > 0:
        x = x * (0.9 / peak)
    pcm = (x.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().tobytes()
    dec = _decoder()
    dec.start_utt()
    dec.process_raw(pcm, full_utt=True)
    dec.end_utt()
    hyp = dec.hyp()
    return hyp.hypstr if hyp is not None else ""


@functools.lru_cache(maxsize=4)
def _mel(sample_rate: int) -> torchaudio.transforms.MelSpectrogram:
    return torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=1024, hop_length=256, n_mels=40, f_min=60.0,
                                                f_max=min(7600.0, sample_rate / 2))


def voice_embedding(audio: torch.Tensor | np.ndarray, sample_rate: int) -> np.ndarray:
    """``(80,)``: mean and standard deviation over voiced frames of the 40 log-mel bands (dB) of ``(T,)`` audio.

    Audio is resampled to 16 kHz first (every voice then has the same band limits), and frames
    more than 35 dB below the loudest are left out (pauses carry no voice).
    """
    x = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
    x = torchaudio.functional.resample(x, sample_rate, ASR_RATE) if sample_rate != ASR_RATE else x
    x = x / x.abs().max().clamp_min(1e-6)
    db = 10.0 * torch.log10(_mel(ASR_RATE)(x) + 1e-8)                 # (40, frames)
    energy = db.max(0).values
    keep = energy > energy.max() - 35.0
    db = db[:, keep] if int(keep.sum()) >= 2 else db
    return torch.cat([db.mean(1), db.std(1)]).numpy().astype(np.float64)


MFCC_BANDS = 40


@functools.lru_cache(maxsize=1)
def _mfcc() -> torchaudio.transforms.MFCC:
    return torchaudio.transforms.MFCC(ASR_RATE, n_mfcc=20, melkwargs={"n_fft": 512, "hop_length": 160,
                                                                          "win_length": 400, "n_mels": MFCC_BANDS,
                                                                          "f_min": 60.0, "f_max": 7600.0})


def mfcc_frames(audio: torch.Tensor | np.ndarray, sample_rate: int) -> np.ndarray:
    """``(frames, 38)``: MFCCs 1-19 and their deltas at 16 kHz, of the frames whose mean log-mel level is
    within 30 dB of the loudest frame's (pauses carry no voice)."""
    x = torch.as_tensor(audio, dtype=torch.float32).reshape(-1)
    x = torchaudio.functional.resample(x, sample_rate, ASR_RATE) if sample_rate != ASR_RATE else x
    x = x / x.abs().max().clamp_min(1e-6)
    c = _mfcc()(x)                                                    # (20, frames)
    d = torchaudio.functional.compute_deltas(c[None])[0]
    level_db = c[0] / math.sqrt(MFCC_BANDS)             # orthonormal DCT: c0 = sqrt(bands) x mean dB
    keep = level_db > level_db.max() - 30.0
    return torch.cat([c[1:], d[1:]])[:, keep].T.numpy().astype(np.float64)


class VoiceGMMs:
    """Gaussian-mixture speaker identification on :func:`mfcc_frames` (see the module docstring).

    Args:
        recordings: voice name -> that voice's ``(T,)`` recordings at ``sample_rate``.
        components: mixture components per voice.
    """

    def __init__(self, recordings: dict[str, list], sample_rate: int, components: int = 16, seed: int = 0):
        try:
            from sklearn.mixture import GaussianMixture
        except ImportError as exc:
            raise SDSAudioError("the GMM voice measure needs scikit-learn: `pip install -e '.[dev]'`") from exc
        self.models = {}
        for name, clips in recordings.items():
            frames = np.concatenate([mfcc_frames(c, sample_rate) for c in clips])
            self.models[name] = GaussianMixture(components, covariance_type="diag", random_state=seed,
                                                max_iter=200).fit(frames)

    def scores(self, audio: torch.Tensor | np.ndarray, sample_rate: int) -> dict[str, float]:
        """Mean log-likelihood per frame of one recording under every voice's mixture."""
        frames = mfcc_frames(audio, sample_rate)
        return {name: float(m.score(frames)) for name, m in self.models.items()}

    def nearest(self, audio: torch.Tensor | np.ndarray, sample_rate: int) -> str:
        s = self.scores(audio, sample_rate)
        return max(s, key=s.get)


class VoiceCentroids:
    """Nearest-voice assignment of :func:`voice_embedding` vectors (see the module docstring).

    Args:
        embeddings: voice name -> ``(n_i, 80)`` embeddings of that voice's recordings.
    """

    def __init__(self, embeddings: dict[str, np.ndarray]):
        stacked = np.concatenate(list(embeddings.values()))
        self.mean = stacked.mean(0)
        self.std = stacked.std(0) + 1e-6
        self.names = list(embeddings)
        self.centroids = np.stack([self._unit(self._scale(e).mean(0)) for e in embeddings.values()])

    def _scale(self, e: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(e) - self.mean) / self.std

    @staticmethod
    def _unit(v: np.ndarray) -> np.ndarray:
        return v / (np.linalg.norm(v, axis=-1, keepdims=True) + 1e-12)

    def similarities(self, embedding: np.ndarray) -> dict[str, float]:
        """Cosine similarity of one embedding to every voice's centroid."""
        v = self._unit(self._scale(embedding))[0]
        return {name: float(c @ v) for name, c in zip(self.names, self.centroids)}

    def nearest(self, embedding: np.ndarray) -> str:
        sims = self.similarities(embedding)
        return max(sims, key=sims.get)


__all__ = ["ASR_RATE", "VoiceCentroids", "VoiceGMMs", "mfcc_frames", "recognize", "voice_embedding", "wer", "word_errors", "words"]
