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

Files
-----
``save_judge`` writes ``.safetensors`` (fp16 by default) with the
:class:`JudgeConfig` as JSON in the metadata. The default weights live at
``sds_audio/assets/judge.safetensors``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from ..atomic import atomic_path
from ..audio_io import match_channels, resample
from ..errors import SDSAudioError
from ..spectral import MelMagnitudes

__all__ = [
    "JudgeConfig", "JudgeModel", "Classification", "save_judge", "load_judge", "load_default_judge",
    "DEFAULT_JUDGE_PATH", "judge_score", "classify", "embed_audio", "embed_text",
]

DEFAULT_JUDGE_PATH = Path(__file__).resolve().parent.parent / "assets" / "judge.safetensors"
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
    from ..text import TextEncoder
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
