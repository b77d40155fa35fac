"""The audio-text judge: a small contrastive (CLAP-style) model that scores prompt alignment.

Benchmarks need to ask "does this audio sound like the prompt?" the way the
Audio-SDS paper uses CLAP. The judge answers with the cosine similarity of an
audio embedding and a text embedding in a shared space. It is independent of
the diffusion prior: its own audio encoder and its own trained weights, none
shared with the codec or the flow model (the only common part is the frozen,
pretrained MiniLM sentence encoder, which nobody here trains).

Model
-----
- Audio: mono 22050 Hz -> log-mel magnitudes (:class:`sds_audio.spectral.MelMagnitudes`,
  torchaudio underneath; 64 bands, 1024-point FFT, hop 256, about 86 frames/s)
  -> per-band batch norm -> four 3x3 conv blocks with stride 2 (conv, batch
  norm, ReLU; 32-64-128-256 channels) -> mean over frequency -> mean + max
  over time -> MLP -> ``embed_dim``. Strided convolutions instead of
  conv + pooling keep a training step cheap enough for a CPU. Clips shorter
  than ``segment_s`` are zero-padded to it (as in training); longer clips are
  pooled over their whole length.
- Text: the frozen all-MiniLM-L6-v2 pooled sentence embedding
  (:class:`sds_audio.text.TextEncoder`, 384-d) -> LayerNorm -> MLP -> ``embed_dim``.
- Both sides are L2-normalised; ``logit_scale = log(1 / temperature)`` is
  learned (clamped to at most log 100), as in CLIP.

Training (:func:`train_judge`)
------------------------------
Symmetric InfoNCE with *concept-aware* targets. Many clips share a concept
(and captions of one concept say nearly the same thing), so treating every
other caption in the batch as a negative would push apart things that should
be close. We do two things:

1. Batches are concept-balanced: each batch draws ``batch_size`` concepts
   uniformly (distinct when there are at least ``batch_size`` concepts; an
   even spread otherwise), then a random training clip of each. Rare concepts
   get as many updates as common ones.
2. Targets are multi-positive: audio ``i``'s target distribution is uniform
   over the captions ``j`` of the same concept (itself included), and the
   same for captions over audios. The loss is the cross-entropy of the
   softmax over the batch against these targets, averaged over both
   directions. With all-distinct concepts this is exactly CLIP's loss.

Augmentation works on precomputed log-mel magnitudes (the corpus is turned
into mels once and cached as ``mel_cache.safetensors`` in ``out_dir``), which
makes a CPU step cost just the network. Because mixing happens in the power
domain, the augmentations are the waveform ones, exactly for gain and in
expectation for noise:

- random gain (uniform in dB, default -24..+6 dB) so the judge rates timbre,
  not loudness,
- mild white noise (probability 0.5, 20..50 dB below the crop's mean power)
  added as the mel power of a real white-noise recording (random excerpt of
  a seeded noise bank),
- time shift: half the crops start at the clip's onset shifted by up to
  +-0.1 s (leading silence or a clipped attack), the other half anywhere in
  the clip.

A training step (batch 64, one thread) costs about 0.23 CPU-seconds under
bf16 autocast on a CPU with AMX, 0.40 s in fp32, so the default 12000 steps
take about 45-80 minutes of one core. The held-out zero-shot accuracy is
written to ``metrics.json``.

Captions are replaced by the concept's canonical prompt with probability
``prompt_prob`` (0.2), so the canonical prompt (what benchmarks ask) is seen;
paraphrases never are, and :func:`evaluate_judge` reports them separately as
the zero-shot text-generalisation number.

Files
-----
``save_judge`` writes ``.safetensors`` (fp16 by default) with the
:class:`JudgeConfig` as JSON in the metadata. The default weights live at
``sds_audio/assets/judge.safetensors``.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .atomic import atomic_path, write_json_atomic
from .audio_io import match_channels, resample
from .errors import SDSAudioError
from .spectral import MelMagnitudes

__all__ = [
    "JudgeConfig", "JudgeModel", "Classification", "save_judge", "load_judge", "load_default_judge",
    "DEFAULT_JUDGE_PATH", "judge_score", "classify", "embed_audio", "embed_text", "evaluate_judge",
    "train_judge",
]

DEFAULT_JUDGE_PATH = Path(__file__).resolve().parent / "assets" / "judge.safetensors"
FORMAT_NAME = "sds-audio-judge"
FORMAT_VERSION = "1"
TRAIN_COMMAND = "sds-audio train judge --corpus DIR --out DIR"
_LOG_EPS = 1e-8  # power floor inside MelMagnitudes; log-magnitude floor = 0.5 * log(1e-8)


# --------------------------------------------------------------------------- configuration
@dataclass
class JudgeConfig:
    """Architecture and front-end of a :class:`JudgeModel` (stored in the weights file).

    Args:
        sample_rate: audio rate the judge works at, Hz (inputs are resampled to it).
        n_fft: mel front-end FFT size, samples.
        hop_length: mel frame hop, samples.
        n_mels: mel bands.
        f_min_hz: lowest mel band edge, Hz.
        channels: output channels of the conv blocks (each halves time and frequency by stride 2).
        head_dim: hidden width of the audio and text projection MLPs.
        embed_dim: size of the shared embedding space.
        text_dim: size of the frozen text encoder's pooled embedding.
        segment_s: training crop length, s; shorter inputs are zero-padded to it.
        dropout: dropout in the projection MLPs.
        init_temperature: initial softmax temperature (``logit_scale = log(1/T)``).
    """

    sample_rate: int = 22050
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 64
    f_min_hz: float = 20.0
    channels: tuple[int, ...] = (32, 64, 128, 256)
    head_dim: int = 512
    embed_dim: int = 256
    text_dim: int = 384
    segment_s: float = 2.0
    dropout: float = 0.1
    init_temperature: float = 0.07

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "judge config") -> "JudgeConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SDSAudioError(f"{source}: unknown judge config keys {unknown} (file from a newer sds-audio?)")
        data = dict(data)
        if "channels" in data:
            data["channels"] = tuple(int(c) for c in data["channels"])
        return cls(**data)

    @property
    def min_samples(self) -> int:
        """Inputs shorter than this many samples are zero-padded (``segment_s * sample_rate``)."""
        return int(round(self.segment_s * self.sample_rate))

    @property
    def segment_frames(self) -> int:
        """Mel frames of a ``segment_s`` clip (centred STFT)."""
        return self.min_samples // self.hop_length + 1


# --------------------------------------------------------------------------- model
class _ConvBlock(nn.Module):
    """3x3 convolution with stride 2 in time and frequency, batch norm, ReLU (halves both axes)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class AudioEncoder(nn.Module):
    """Log-mel ``(B, n_mels, frames)`` -> unnormalised embedding ``(B, embed_dim)``."""

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.band_norm = nn.BatchNorm1d(config.n_mels)
        chans = (1,) + tuple(config.channels)
        self.blocks = nn.ModuleList(_ConvBlock(a, b) for a, b in zip(chans[:-1], chans[1:]))
        self.head = nn.Sequential(
            nn.Linear(2 * chans[-1], config.head_dim), nn.GELU(), nn.Dropout(config.dropout),
            nn.Linear(config.head_dim, config.embed_dim))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = self.band_norm(logmel).unsqueeze(1)  # (B, 1, M, F)
        for block in self.blocks:
            x = block(x)
        x = x.mean(dim=2)  # (B, C, F')
        pooled = torch.cat([x.mean(dim=-1), x.amax(dim=-1)], dim=-1)
        return self.head(pooled)


class TextProjection(nn.Module):
    """Frozen sentence embedding ``(N, text_dim)`` -> unnormalised embedding ``(N, embed_dim)``."""

    def __init__(self, config: JudgeConfig):
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(config.text_dim), nn.Linear(config.text_dim, config.head_dim), nn.GELU(),
            nn.Dropout(config.dropout), nn.Linear(config.head_dim, config.embed_dim))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.net(pooled)


@functools.lru_cache(maxsize=1)
def _default_text_encoder():
    from .text import TextEncoder
    return TextEncoder()


class Classification(NamedTuple):
    """Zero-shot classification result: ``probs (B, K)`` over the prompts, ``index (B,)`` argmax."""

    probs: torch.Tensor
    index: torch.Tensor


class JudgeModel(nn.Module):
    """Contrastive audio-text judge (see the module docstring).

    Args:
        config: architecture.
        text_encoder: object with ``encode(list[str]) -> (tokens, mask, pooled)``;
            default: the shared frozen MiniLM :class:`sds_audio.text.TextEncoder`
            (created on first use). It is not part of the state dict.

    Methods that take audio accept ``(B, C, T)`` at any ``sample_rate`` and any
    channel count (downmixed to mono, resampled to ``config.sample_rate``);
    they are differentiable, so the judge can also serve as a loss.
    """

    def __init__(self, config: JudgeConfig | None = None, text_encoder=None):
        super().__init__()
        self.config = config or JudgeConfig()
        c = self.config
        self.mel = MelMagnitudes(c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, hop_length=c.hop_length,
                                 f_min_hz=c.f_min_hz, eps=_LOG_EPS)
        self.audio_encoder = AudioEncoder(c)
        self.text_projection = TextProjection(c)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / c.init_temperature)))
        # a plain attribute, not a submodule: the frozen encoder is not saved with the judge
        object.__setattr__(self, "_text_encoder", text_encoder)

    # -- pieces
    @property
    def text_encoder(self):
        if self._text_encoder is None:
            object.__setattr__(self, "_text_encoder", _default_text_encoder())
        return self._text_encoder

    @property
    def scale(self) -> torch.Tensor:
        """Softmax logit scale ``exp(logit_scale)``, clamped to [1, 100]."""
        return self.logit_scale.clamp(0.0, math.log(100.0)).exp()

    @property
    def temperature(self) -> float:
        """Current softmax temperature ``1 / scale`` (a plain float)."""
        return 1.0 / self.scale.detach().item()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def prepare_audio(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """``(B, C, T)`` at ``sample_rate`` -> ``(B, 1, T')`` mono at the judge's rate, >= ``segment_s`` long."""
        if not isinstance(audio, torch.Tensor) or audio.dim() != 3:
            shape = tuple(audio.shape) if isinstance(audio, torch.Tensor) else type(audio).__name__
            raise SDSAudioError(f"audio must be a (batch, channels, samples) tensor, got {shape}")
        if audio.shape[-1] == 0:
            raise SDSAudioError("audio holds no samples")
        audio = audio.to(self.logit_scale.device, torch.float32)
        audio = resample(match_channels(audio, 1), int(sample_rate), self.config.sample_rate)
        short = self.config.min_samples - audio.shape[-1]
        if short > 0:
            audio = F.pad(audio, (0, short))
        return audio

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """Mono audio ``(B, 1, T)`` at the judge's rate -> log-mel magnitudes ``(B, n_mels, frames)``."""
        return torch.log(self.mel(audio))[:, 0]

    def encode_features(self, logmel: torch.Tensor) -> torch.Tensor:
        """Log-mel ``(B, n_mels, frames)`` -> L2-normalised audio embeddings ``(B, embed_dim)``."""
        return F.normalize(self.audio_encoder(logmel).float(), dim=-1)

    def project_text(self, pooled: torch.Tensor) -> torch.Tensor:
        """Frozen sentence embeddings ``(N, text_dim)`` -> L2-normalised text embeddings ``(N, embed_dim)``."""
        return F.normalize(self.text_projection(pooled.to(self.logit_scale.device)).float(), dim=-1)

    # -- public API
    def embed_audio(self, audio: torch.Tensor, sample_rate: int) -> torch.Tensor:
        """``(B, C, T)`` audio -> ``(B, embed_dim)`` unit vectors."""
        return self.encode_features(self.features(self.prepare_audio(audio, sample_rate)))

    def embed_text(self, prompts: str | Sequence[str]) -> torch.Tensor:
        """Prompt(s) -> ``(N, embed_dim)`` unit vectors."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise SDSAudioError("no prompt given")
        _, _, pooled = self.text_encoder.encode(prompts)
        return self.project_text(pooled.float())

    def score(self, audio: torch.Tensor, prompts: str | Sequence[str], sample_rate: int) -> torch.Tensor:
        """Cosine similarity ``(B,)`` in [-1, 1] of each clip with its prompt (one prompt is shared by all)."""
        a = self.embed_audio(audio, sample_rate)
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if len(prompts) not in (1, a.shape[0]):
            raise SDSAudioError(f"got {len(prompts)} prompts for {a.shape[0]} clips: give one, or one per clip")
        return (a * self.embed_text(prompts)).sum(dim=-1)

    def classify(self, audio: torch.Tensor, prompts: Sequence[str], sample_rate: int) -> Classification:
        """Zero-shot classification of ``(B, C, T)`` audio among ``K`` prompts.

        Returns:
            ``Classification(probs (B, K), index (B,))``: softmax of the scaled
            cosine similarities, and the best prompt's index.
        """
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        logits = self.scale * self.embed_audio(audio, sample_rate) @ self.embed_text(prompts).T
        probs = logits.softmax(dim=-1)
        return Classification(probs, probs.argmax(dim=-1))


# --------------------------------------------------------------------------- files
def save_judge(judge: JudgeModel, path: str | os.PathLike, dtype: torch.dtype = torch.float16,
               extra_metadata: dict[str, str] | None = None) -> Path:
    """Write the judge's weights (floating tensors as ``dtype``) and config to ``.safetensors`` atomically."""
    from safetensors.torch import save_file
    # the mel filterbank and window are rebuilt from the config, so they stay exact (not fp16)
    state = {k: (v.detach().to(dtype) if v.is_floating_point() else v.detach()).cpu().contiguous()
             for k, v in judge.state_dict().items() if not k.startswith("mel.")}
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": json.dumps(judge.config.to_dict())}
    meta.update(extra_metadata or {})
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files; weights are meant to be shared / shipped
    return path


def load_judge(path: str | os.PathLike | None = None, device: str | torch.device = "cpu",
               text_encoder=None) -> JudgeModel:
    """Load a judge saved by :func:`save_judge` (float32, ``eval()``, frozen).

    Args:
        path: the ``.safetensors`` file; default ``sds_audio/assets/judge.safetensors``.

    Raises:
        SDSAudioError: missing file, not a safetensors file, not a judge, or
            weights that do not fit the stored config; the message names the file.
    """
    from safetensors import SafetensorError, safe_open
    path = Path(path) if path is not None else DEFAULT_JUDGE_PATH
    if not path.is_file():
        hint = (f"train one with `{TRAIN_COMMAND}` and copy OUT/judge.safetensors there"
                if path == DEFAULT_JUDGE_PATH else f"train one with `{TRAIN_COMMAND}`")
        raise SDSAudioError(f"judge weights {path} do not exist: {hint}", exit_code=1)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            state = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SDSAudioError(f"cannot read judge weights {path}: {exc} (re-train or re-copy the file)",
                            exit_code=1) from exc
    if meta.get("format") != FORMAT_NAME or "config" not in meta:
        raise SDSAudioError(f"{path} is not an sds-audio judge file (metadata format={meta.get('format')!r})",
                            exit_code=1)
    try:
        config = JudgeConfig.from_dict(json.loads(meta["config"]), source=str(path))
    except (json.JSONDecodeError, TypeError) as exc:
        raise SDSAudioError(f"{path}: broken judge config in metadata ({exc})", exit_code=1) from exc
    judge = JudgeModel(config, text_encoder=text_encoder)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        result = judge.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise SDSAudioError(f"{path}: weights do not match the stored judge config ({str(exc)[:200]})",
                            exit_code=1) from exc
    missing = [k for k in result.missing_keys if not k.startswith("mel.")]
    if missing or result.unexpected_keys:
        raise SDSAudioError(f"{path}: weights do not match the stored judge config (missing {missing[:3]}, "
                            f"unexpected {result.unexpected_keys[:3]})", exit_code=1)
    return judge.to(device).eval().requires_grad_(False)


@functools.lru_cache(maxsize=1)
def load_default_judge() -> JudgeModel:
    """The shipped judge (``sds_audio/assets/judge.safetensors``), loaded once."""
    return load_judge(DEFAULT_JUDGE_PATH)


def _judge_or_default(judge: JudgeModel | str | os.PathLike | None) -> JudgeModel:
    if judge is None:
        return load_default_judge()
    if isinstance(judge, JudgeModel):
        return judge
    return load_judge(judge)


# --------------------------------------------------------------------------- functional API
@torch.no_grad()
def judge_score(audio: torch.Tensor, prompt: str | Sequence[str], judge: JudgeModel | str | os.PathLike | None = None,
                sample_rate: int = 22050) -> torch.Tensor:
    """Prompt alignment: judge cosine similarity ``(B,)`` in [-1, 1] of ``(B, C, T)`` audio with a prompt.

    Args:
        audio: ``(B, C, T)`` float audio at ``sample_rate`` (any rate and channel count).
        prompt: one prompt for all clips, or one per clip.
        judge: a :class:`JudgeModel`, a weights path, or None for the shipped judge.
        sample_rate: rate of ``audio`` in Hz.

    No gradient (a metric); use :meth:`JudgeModel.score` for a differentiable score.
    """
    model = _judge_or_default(judge)
    was_training = model.training
    model.eval()
    try:
        return model.score(audio, prompt, sample_rate)
    finally:
        model.train(was_training)


@torch.no_grad()
def classify(audio: torch.Tensor, prompts: Sequence[str], judge: JudgeModel | str | os.PathLike | None = None,
             sample_rate: int = 22050) -> Classification:
    """Zero-shot classification among ``prompts``: ``Classification(probs (B, K), index (B,))``."""
    model = _judge_or_default(judge)
    was_training = model.training
    model.eval()
    try:
        return model.classify(audio, prompts, sample_rate)
    finally:
        model.train(was_training)


@torch.no_grad()
def embed_audio(audio: torch.Tensor, judge: JudgeModel | str | os.PathLike | None = None,
                sample_rate: int = 22050) -> torch.Tensor:
    """Judge audio embeddings ``(B, embed_dim)`` (unit vectors; usable for KAD / FAD)."""
    model = _judge_or_default(judge)
    was_training = model.training
    model.eval()
    try:
        return model.embed_audio(audio, sample_rate)
    finally:
        model.train(was_training)


@torch.no_grad()
def embed_text(prompts: str | Sequence[str], judge: JudgeModel | str | os.PathLike | None = None) -> torch.Tensor:
    """Judge text embeddings ``(N, embed_dim)`` (unit vectors)."""
    model = _judge_or_default(judge)
    was_training = model.training
    model.eval()
    try:
        return model.embed_text(prompts)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------- corpus features (training)
@dataclass
class _CorpusFeatures:
    """Log-mel magnitudes of every clip of a corpus, concatenated along time."""

    mels: torch.Tensor            # (n_mels, total_frames) float16
    offsets: torch.Tensor         # (N,) int64 first frame of each clip
    lengths: torch.Tensor         # (N,) int64 frames of each clip
    concept_index: torch.Tensor   # (N,) int64 position in `concepts`
    is_train: torch.Tensor        # (N,) bool
    caption_index: torch.Tensor   # (N,) int64 position in `texts`
    concepts: list[str]
    prompt_index: list[int]       # concept -> position of its canonical prompt in `texts`
    paraphrase_index: list[list[int]]
    texts: list[str]
    text_pooled: torch.Tensor     # (n_texts, text_dim) float32

    def clip(self, i: int) -> torch.Tensor:
        o, n = int(self.offsets[i]), int(self.lengths[i])
        return self.mels[:, o:o + n]


def _corpus_fingerprint(root: Path, config: JudgeConfig) -> str:
    h = hashlib.sha256()
    for name in ("manifest.jsonl", "concepts.json"):
        p = root / name
        h.update(p.read_bytes() if p.is_file() else b"")
    front = {k: v for k, v in config.to_dict().items()
             if k in ("sample_rate", "n_fft", "hop_length", "n_mels", "f_min_hz", "text_dim")}
    h.update(json.dumps(front, sort_keys=True).encode())
    return h.hexdigest()


def _corpus_features(root: Path, judge: JudgeModel, cache_path: Path | None, progress: bool,
                     split: str = "all") -> _CorpusFeatures:
    """Compute (or read from ``cache_path``, when given) the log-mels and text embeddings of a corpus split."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import save_file
    from tqdm.auto import tqdm

    from .corpus.dataset import CorpusDataset, read_concepts

    fingerprint = _corpus_fingerprint(root, judge.config) + f":{split}"
    if cache_path is not None and cache_path.is_file():
        try:
            with safe_open(str(cache_path), framework="pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("fingerprint") == fingerprint:
                    t = {k: fh.get_tensor(k) for k in fh.keys()}
                    info = json.loads(meta["info"])
                    return _CorpusFeatures(
                        mels=t["mels"], offsets=t["offsets"], lengths=t["lengths"],
                        concept_index=t["concept_index"], is_train=t["is_train"].bool(),
                        caption_index=t["caption_index"], text_pooled=t["text_pooled"].float(), **info)
        except (SafetensorError, OSError, KeyError, json.JSONDecodeError):
            pass  # stale or broken cache: recompute

    data = CorpusDataset(root, split=split, segment_s=None, sample_rate=judge.config.sample_rate)
    concepts_json = {c["concept"]: c for c in read_concepts(root)} if (root / "concepts.json").is_file() else {}
    concepts = list(data.concepts)
    texts: list[str] = []
    text_pos: dict[str, int] = {}

    def text_id(s: str) -> int:
        if s not in text_pos:
            text_pos[s] = len(texts)
            texts.append(s)
        return text_pos[s]

    prompt_index = [text_id(concepts_json.get(c, {}).get("prompt") or c) for c in concepts]
    paraphrase_index = [[text_id(p) for p in concepts_json.get(c, {}).get("paraphrases", []) if p.strip()]
                        for c in concepts]
    mels, offsets, lengths, cidx, train, capidx = [], [], [], [], [], []
    total = 0
    with torch.no_grad():
        for i in tqdm(range(len(data)), desc="judge: mel features", disable=not progress, leave=False):
            rec = data.records[i]
            audio = torch.from_numpy(data.load(i)).view(1, 1, -1)
            if audio.shape[-1] == 0:
                raise SDSAudioError(f"corpus clip {root / rec['path']} holds no samples")
            m = judge.features(audio)[0].to(torch.float16)
            mels.append(m)
            offsets.append(total)
            lengths.append(m.shape[-1])
            total += m.shape[-1]
            cidx.append(data.concept_to_index[rec["concept"]])
            train.append(rec["split"] == "train")
            capidx.append(text_id(rec["caption"]))
    pooled = []
    for s in range(0, len(texts), 256):
        pooled.append(judge.text_encoder.encode(texts[s:s + 256])[2].float().cpu())
    feats = _CorpusFeatures(
        mels=torch.cat(mels, dim=-1).contiguous(), offsets=torch.tensor(offsets), lengths=torch.tensor(lengths),
        concept_index=torch.tensor(cidx), is_train=torch.tensor(train), caption_index=torch.tensor(capidx),
        concepts=concepts, prompt_index=prompt_index, paraphrase_index=paraphrase_index, texts=texts,
        text_pooled=torch.cat(pooled))
    info = {"concepts": concepts, "prompt_index": prompt_index, "paraphrase_index": paraphrase_index,
            "texts": texts}
    if cache_path is None:
        return feats
    tensors = {"mels": feats.mels, "offsets": feats.offsets, "lengths": feats.lengths,
               "concept_index": feats.concept_index, "is_train": feats.is_train.to(torch.uint8),
               "caption_index": feats.caption_index, "text_pooled": feats.text_pooled.contiguous()}
    with atomic_path(cache_path) as tmp:
        save_file(tensors, str(tmp), metadata={"fingerprint": fingerprint, "info": json.dumps(info)})
    return feats


def _white_noise_mel_power(judge: JudgeModel, seconds: float = 20.0, seed: int = 1234) -> torch.Tensor:
    """Mel power ``(n_mels, frames)`` of unit-variance white noise (the noise bank for augmentation)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(1, 1, int(seconds * judge.config.sample_rate), generator=g)
    with torch.no_grad():
        return judge.mel(noise)[0, 0].pow(2) - _LOG_EPS


# --------------------------------------------------------------------------- batches
def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


@dataclass
class _Augment:
    gain_db: tuple[float, float] = (-24.0, 6.0)
    noise_prob: float = 0.5
    snr_db: tuple[float, float] = (20.0, 50.0)
    onset_prob: float = 0.5
    shift_s: float = 0.1


def _crop(mel: torch.Tensor, start: int, n_frames: int, floor: float) -> torch.Tensor:
    """Frames ``start .. start + n_frames`` of ``mel (M, F)``; outside the clip is ``floor`` (silence)."""
    out = torch.full((mel.shape[0], n_frames), floor, dtype=torch.float32)
    lo, hi = max(start, 0), min(start + n_frames, mel.shape[1])
    if hi > lo:
        out[:, lo - start:hi - start] = mel[:, lo:hi].float()
    return out


def _make_batch(feats: _CorpusFeatures, clips: torch.Tensor, n_frames: int, g: torch.Generator,
                aug: _Augment | None, noise_bank: torch.Tensor | None, hop_s: float) -> torch.Tensor:
    """Augmented log-mel crops ``(B, n_mels, n_frames)`` of corpus clips ``clips (B,)``."""
    floor = 0.5 * math.log(_LOG_EPS)
    b = clips.shape[0]
    out = []
    for k in range(b):
        mel = feats.clip(int(clips[k]))
        n = mel.shape[1]
        if aug is None:
            start = 0
        elif float(torch.rand(1, generator=g)) < aug.onset_prob or n <= n_frames:
            max_shift = int(round(aug.shift_s / hop_s))
            start = int(torch.randint(-max_shift, max_shift + 1, (1,), generator=g))
        else:
            start = int(torch.randint(0, n - n_frames + 1, (1,), generator=g))
        out.append(_crop(mel, start, n_frames, floor))
    logmel = torch.stack(out)
    if aug is None:
        return logmel
    # back to power, apply gain and noise there, then log-magnitude again
    power = (2.0 * logmel).exp() - _LOG_EPS
    gain = 10.0 ** (_uniform(g, b, *aug.gain_db) / 10.0)  # power gain
    power = power.clamp_min(0.0) * gain.view(b, 1, 1)
    if noise_bank is not None and aug.noise_prob > 0:
        use = (torch.rand(b, generator=g) < aug.noise_prob).float()
        snr = 10.0 ** (_uniform(g, b, *aug.snr_db) / 10.0)
        starts = torch.randint(0, noise_bank.shape[1] - n_frames + 1, (b,), generator=g)
        noise = torch.stack([noise_bank[:, int(s):int(s) + n_frames] for s in starts])
        # scale the noise to the drawn signal-to-noise ratio (mel-power means of the crop)
        level = power.mean(dim=(1, 2)) / noise.mean(dim=(1, 2)).clamp_min(1e-12) / snr * use
        power = power + level.view(b, 1, 1) * noise
    return 0.5 * torch.log(power + _LOG_EPS)


def _sample_clips(by_concept: list[torch.Tensor], batch_size: int, g: torch.Generator) -> torch.Tensor:
    """Concept-balanced draw: distinct concepts when possible, then one random clip of each."""
    k = len(by_concept)
    reps = -(-batch_size // k)
    order = torch.cat([torch.randperm(k, generator=g) for _ in range(reps)])[:batch_size]
    picks = []
    for c in order.tolist():
        pool = by_concept[c]
        picks.append(pool[int(torch.randint(0, pool.shape[0], (1,), generator=g))])
    return torch.stack(picks)


def _contrastive_loss(audio_emb: torch.Tensor, text_emb: torch.Tensor, concept: torch.Tensor,
                      scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE with multi-positive targets (same concept = positive)."""
    logits = scale * audio_emb @ text_emb.T
    same = (concept.view(-1, 1) == concept.view(1, -1)).float()
    target = same / same.sum(dim=1, keepdim=True)
    loss_a = -(target * logits.log_softmax(dim=1)).sum(dim=1).mean()
    loss_t = -(target * logits.T.log_softmax(dim=1)).sum(dim=1).mean()
    return 0.5 * (loss_a + loss_t)


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def _evaluate_features(judge: JudgeModel, feats: _CorpusFeatures, clips: Sequence[int],
                       batch_size: int = 64) -> dict[str, Any]:
    """Zero-shot top-1 of ``clips`` (whole clips, padded to ``segment_s``) with canonical prompts / paraphrases."""
    if len(clips) == 0:
        return {"n_clips": 0, "top1": None, "paraphrase_top1": None, "per_concept_top1": {}}
    was_training = judge.training
    judge.eval()
    try:
        n_min = judge.config.segment_frames
        floor = 0.5 * math.log(_LOG_EPS)
        embs = []
        # batch clips of equal padded length together (pooling is over the whole clip)
        clips = list(clips)
        lengths = {i: max(int(feats.lengths[i]), n_min) for i in clips}
        by_len: dict[int, list[int]] = {}
        for i in clips:
            by_len.setdefault(lengths[i], []).append(i)
        emb_of: dict[int, torch.Tensor] = {}
        for n, group in by_len.items():
            for s in range(0, len(group), batch_size):
                part = group[s:s + batch_size]
                x = torch.stack([_crop(feats.clip(i), 0, n, floor) for i in part]).to(judge.logit_scale.device)
                for i, e in zip(part, judge.encode_features(x).cpu()):
                    emb_of[i] = e
        embs = torch.stack([emb_of[i] for i in clips])
        truth = feats.concept_index[clips]
        prompts = judge.project_text(feats.text_pooled[feats.prompt_index]).cpu()
        pred = (embs @ prompts.T).argmax(dim=1)
        correct = (pred == truth)
        per_concept = {}
        for c in truth.unique().tolist():
            m = truth == c
            per_concept[feats.concepts[c]] = float(correct[m].float().mean())
        # paraphrases: for each paraphrase round r, concept c is represented by its r-th paraphrase
        para_acc = None
        n_para = min((len(p) for p in feats.paraphrase_index), default=0)
        if n_para > 0:
            accs = []
            for r in range(n_para):
                t = judge.project_text(feats.text_pooled[[p[r] for p in feats.paraphrase_index]]).cpu()
                accs.append(float(((embs @ t.T).argmax(dim=1) == truth).float().mean()))
            para_acc = sum(accs) / len(accs)
        return {"n_clips": len(clips), "top1": float(correct.float().mean()), "paraphrase_top1": para_acc,
                "per_concept_top1": per_concept}
    finally:
        judge.train(was_training)


def evaluate_judge(corpus_dir: str | os.PathLike, judge: JudgeModel | str | os.PathLike | None = None,
                   split: str = "heldout", progress: bool = True) -> dict[str, Any]:
    """Zero-shot concept accuracy of a judge on a corpus split.

    Each clip (whole, zero-padded to ``segment_s``) is assigned the concept
    whose canonical prompt (``concepts.json``) has the highest cosine
    similarity. ``paraphrase_top1`` repeats that with the concepts'
    paraphrases (never training captions), averaged over paraphrase rounds.

    Returns:
        ``{"n_clips", "top1", "paraphrase_top1", "per_concept_top1"}``.
    """
    if split not in ("train", "heldout", "all"):
        raise SDSAudioError(f"split must be 'train', 'heldout' or 'all', got {split!r}")
    model = _judge_or_default(judge)
    feats = _corpus_features(Path(corpus_dir), model, None, progress, split=split)
    return _evaluate_features(model, feats, list(range(len(feats.lengths))))


# --------------------------------------------------------------------------- training
CHECKPOINT_NAME = "judge_checkpoint.safetensors"
FINAL_NAME = "judge.safetensors"
METRICS_NAME = "metrics.json"
CACHE_NAME = "mel_cache.safetensors"


def _lr_at(step: int, total: int, lr: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of ``lr``."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = (step - warmup) / max(1, total - warmup)
    return lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0))))


def _save_checkpoint(path: Path, judge: JudgeModel, opt: torch.optim.Optimizer, step: int,
                     g: torch.Generator, history: list, train_args: dict) -> None:
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in judge.state_dict().items()}
    opt_state = opt.state_dict()
    for pid, st in opt_state["state"].items():
        for name, v in st.items():
            t = v if isinstance(v, torch.Tensor) else torch.tensor(v)
            tensors[f"optim.{pid}.{name}"] = t.detach().cpu().contiguous()
    tensors["rng.generator"] = g.get_state()
    tensors["rng.torch"] = torch.get_rng_state()
    meta = {"format": FORMAT_NAME + "-checkpoint", "step": str(step), "config": json.dumps(judge.config.to_dict()),
            "train_args": json.dumps(train_args), "history": json.dumps(history)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)


def _load_checkpoint(path: Path, judge: JudgeModel, opt: torch.optim.Optimizer, g: torch.Generator,
                     train_args: dict) -> tuple[int, list]:
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise SDSAudioError(f"cannot read the judge checkpoint {path}: {exc}; delete it (or pass resume=False) "
                            "to start over", exit_code=1) from exc
    if meta.get("format") != FORMAT_NAME + "-checkpoint":
        raise SDSAudioError(f"{path} is not a judge training checkpoint; delete it or use another --out")
    saved_cfg = json.loads(meta["config"])
    if saved_cfg != judge.config.to_dict():
        raise SDSAudioError(f"{path} was trained with another judge config; use another --out directory "
                            "or pass resume=False to start over")
    saved_args = json.loads(meta.get("train_args", "{}"))
    fixed = ("batch_size", "segment_s", "seed", "corpus_fingerprint")
    diff = [k for k in fixed if saved_args.get(k) != train_args.get(k)]
    if diff:
        raise SDSAudioError(f"{path} was trained with other settings ({', '.join(diff)} differ); use another "
                            "--out directory or pass resume=False to start over")
    judge.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state = opt.state_dict()
    for pid in range(len([p for grp in state["param_groups"] for p in grp["params"]])):
        entries = {k.split(".", 2)[2]: v for k, v in tensors.items() if k.startswith(f"optim.{pid}.")}
        if entries:
            state["state"][pid] = entries
    opt.load_state_dict(state)
    g.set_state(tensors["rng.generator"])
    torch.set_rng_state(tensors["rng.torch"])
    return int(meta["step"]), json.loads(meta.get("history", "[]"))


def _cpu_has_bf16() -> bool:
    """True when the CPU advertises native bfloat16 math (AMX-BF16 or AVX512-BF16; Linux /proc/cpuinfo)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"amx_bf16", "avx512_bf16"})
    except OSError:
        pass
    return False


def train_judge(corpus_dir: str | os.PathLike, out_dir: str | os.PathLike, *, steps: int = 12000,
                batch_size: int = 64, segment_s: float = 2.0, lr: float = 2e-3, weight_decay: float = 1e-2,
                warmup_steps: int = 200, seed: int = 0, resume: bool = True, checkpoint_every: int = 250,
                eval_every: int = 1000, prompt_prob: float = 0.2, config: JudgeConfig | None = None,
                precision: str = "auto", num_threads: int | None = None, progress: bool = True,
                on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, Any]:
    """Train the judge on a corpus; write ``judge.safetensors`` and ``metrics.json`` into ``out_dir``.

    Args:
        corpus_dir: corpus directory (``manifest.jsonl``, ``concepts.json``, audio).
        out_dir: created if needed; holds ``mel_cache.safetensors`` (features,
            reused across runs), ``judge_checkpoint.safetensors`` (every
            ``checkpoint_every`` steps), and at the end ``judge.safetensors``
            (fp16) and ``metrics.json``.
        steps: optimiser steps in total (a resumed run continues to this count).
        batch_size: clips per step.
        segment_s: training crop, seconds (also the judge's minimum input length).
        lr, weight_decay, warmup_steps: AdamW with warm-up and cosine decay.
        seed: seeds initialisation, batches and augmentation.
        resume: continue from ``out_dir``'s checkpoint when there is one.
        eval_every: held-out zero-shot accuracy every this many steps (0: only at the end).
        prompt_prob: probability of training on the canonical prompt instead of the caption.
        config: architecture (``segment_s`` overrides its ``segment_s``).
        precision: ``"fp32"``; ``"bf16"``: training forward passes under CPU
            bfloat16 autocast (about 1.7x faster on CPUs with AMX / AVX512-BF16,
            slower on CPUs without; same held-out accuracy in our comparison);
            ``"auto"``: bf16 when the CPU has native bf16, else fp32.
            Evaluation and the saved weights are fp32 / fp16.
        num_threads: ``torch.set_num_threads`` for the run (None: leave as is).
            On a machine shared with other jobs use 1: several intra-op threads
            on oversubscribed cores spend most of their time waiting.
        progress: show tqdm bars.
        on_step: called as ``on_step(step, {"loss": ..., "lr": ...})`` after every step.

    Returns:
        The metrics written to ``metrics.json``.
    """
    from tqdm.auto import tqdm

    if steps < 1 or batch_size < 2:
        raise SDSAudioError(f"steps must be >= 1 and batch_size >= 2, got {steps} and {batch_size}")
    if precision not in ("fp32", "bf16", "auto"):
        raise SDSAudioError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")
    if precision == "auto":
        precision = "bf16" if _cpu_has_bf16() else "fp32"
    if num_threads:
        torch.set_num_threads(int(num_threads))
    root = Path(corpus_dir)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = dataclasses.replace(config or JudgeConfig(), segment_s=float(segment_s))
    started = time.time()

    torch.manual_seed(seed)
    judge = JudgeModel(cfg)
    feats = _corpus_features(root, judge, out / CACHE_NAME, progress)
    train_clips = torch.nonzero(feats.is_train).flatten()
    if train_clips.numel() == 0:
        raise SDSAudioError(f"corpus {root} has no clips in split 'train'")
    heldout_clips = torch.nonzero(~feats.is_train).flatten().tolist()
    by_concept = [train_clips[feats.concept_index[train_clips] == c] for c in range(len(feats.concepts))]
    by_concept_nonempty = [c for c in by_concept if c.numel() > 0]
    train_args = {"batch_size": batch_size, "segment_s": float(segment_s), "seed": seed, "lr": lr,
                  "precision": precision,
                  "weight_decay": weight_decay, "warmup_steps": warmup_steps, "steps": steps,
                  "prompt_prob": prompt_prob, "corpus_fingerprint": _corpus_fingerprint(root, cfg)}

    decay = [p for n, p in judge.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in judge.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr)
    g = torch.Generator().manual_seed(seed)
    step, history = 0, []
    ckpt = out / CHECKPOINT_NAME
    if resume and ckpt.is_file():
        step, history = _load_checkpoint(ckpt, judge, opt, g, train_args)

    aug = _Augment()
    noise_bank = _white_noise_mel_power(judge)
    hop_s = cfg.hop_length / cfg.sample_rate
    n_frames = cfg.segment_frames
    prompt_of_concept = torch.tensor(feats.prompt_index)
    judge.train()
    judge.audio_encoder.to(memory_format=torch.channels_last)  # faster CPU convolutions (oneDNN)
    bar = tqdm(total=steps, initial=step, desc="judge", disable=not progress, dynamic_ncols=True)
    loss_avg = None
    try:
        while step < steps:
            clips = _sample_clips(by_concept_nonempty, batch_size, g)
            concept = feats.concept_index[clips]
            text_ids = feats.caption_index[clips].clone()
            use_prompt = torch.rand(batch_size, generator=g) < prompt_prob
            text_ids[use_prompt] = prompt_of_concept[concept[use_prompt]]
            logmel = _make_batch(feats, clips, n_frames, g, aug, noise_bank, hop_s)
            for grp in opt.param_groups:
                grp["lr"] = _lr_at(step, steps, lr, warmup_steps)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                a = judge.encode_features(logmel)
                t = judge.project_text(feats.text_pooled[text_ids])
            loss = _contrastive_loss(a, t, concept, judge.scale)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(judge.parameters(), 5.0)
            opt.step()
            step += 1
            lv = loss.detach().item()
            loss_avg = lv if loss_avg is None else 0.98 * loss_avg + 0.02 * lv
            bar.update(1)
            bar.set_postfix(loss=f"{loss_avg:.3f}", temp=f"{judge.temperature:.3f}")
            if on_step is not None:
                on_step(step, {"loss": lv, "lr": opt.param_groups[0]["lr"]})
            if eval_every and step % eval_every == 0 and step < steps:
                res = _evaluate_features(judge, feats, heldout_clips)
                history.append({"step": step, "loss": round(loss_avg, 4), "heldout_top1": res["top1"],
                                "heldout_paraphrase_top1": res["paraphrase_top1"],
                                "temperature": round(judge.temperature, 4),
                                "elapsed_s": round(time.time() - started, 1)})
                if progress:
                    bar.write(f"judge step {step}: loss {loss_avg:.3f}, held-out top-1 {res['top1']}, "
                              f"paraphrase top-1 {res['paraphrase_top1']}")
            if step % checkpoint_every == 0 or step == steps:
                _save_checkpoint(ckpt, judge, opt, step, g, history, train_args)
    finally:
        bar.close()

    judge.eval()
    heldout = _evaluate_features(judge, feats, heldout_clips)
    rng = torch.Generator().manual_seed(seed + 1)
    sub = train_clips[torch.randperm(train_clips.numel(), generator=rng)[:max(len(heldout_clips), 256)]]
    train_res = _evaluate_features(judge, feats, sub.tolist())
    final = save_judge(judge, out / FINAL_NAME, extra_metadata={"trained_steps": str(step)})
    metrics = {
        "heldout_top1": heldout["top1"], "heldout_paraphrase_top1": heldout["paraphrase_top1"],
        "train_top1": train_res["top1"], "n_heldout_clips": heldout["n_clips"],
        "n_train_clips": int(train_clips.numel()), "n_concepts": len(feats.concepts), "steps": step,
        "temperature": judge.temperature, "parameters": judge.num_parameters(),
        "weights": str(final), "weights_bytes": final.stat().st_size, "train_args": train_args,
        "config": cfg.to_dict(), "per_concept_heldout_top1": heldout["per_concept_top1"], "history": history,
        "seconds_this_run": round(time.time() - started, 1),
    }
    write_json_atomic(out / METRICS_NAME, metrics)
    os.chmod(out / METRICS_NAME, 0o644)
    return metrics
