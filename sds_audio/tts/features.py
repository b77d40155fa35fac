"""The speech model's frame space: what it predicts, and how those frames become audio.

Two kinds, named by :attr:`TTSConfig.features <sds_audio.tts.config.TTSConfig>`:

- ``"codec"``: the library codec's latents (:class:`CodecFeatures`); the codec's decoder is the vocoder.
- ``"mel"``: log-mel frames (natural log of the magnitude mel spectrogram, floor ``1e-5``)
  (:class:`MelFeatures`); torchaudio's inverse mel scale and Griffin-Lim phase reconstruction are
  the vocoder. No weights are needed, and the recogniser hears the corpus recordings through this
  round trip about as well as the recordings themselves (model card, ``sds_audio/assets/tts.md``).

Both expose ``sample_rate``, ``channels``, ``frame_rate``, ``fingerprint()`` (a cache built with
other features is rebuilt), ``encode(audio (B, 1, T)) -> (B, channels, frames)`` and
``decode(frames) -> audio (B, 1, T)``.
"""

from __future__ import annotations

import hashlib
import os

import torch
import torchaudio

LOG_FLOOR = 1e-5


class MelFeatures(torch.nn.Module):
    """Log-mel frames with a Griffin-Lim decoder.

    Args:
        sample_rate: audio rate in Hz.
        n_mels: mel bands (the model's channels).
        hop_length: samples per frame.
        n_fft: FFT size (Hann window of the same length).
        f_max_hz: top of the mel filter bank.
        griffin_lim_iters: phase-reconstruction iterations of :meth:`decode`.
    """

    def __init__(self, sample_rate: int = 22050, n_mels: int = 80, hop_length: int = 512, n_fft: int = 1024,
                 f_max_hz: float = 8000.0, griffin_lim_iters: int = 32):
        super().__init__()
        self.sample_rate = int(sample_rate)
        self.channels = int(n_mels)
        self.hop_length = int(hop_length)
        self.n_fft = int(n_fft)
        self.f_max_hz = float(f_max_hz)
        self.griffin_lim_iters = int(griffin_lim_iters)
        self.mel = torchaudio.transforms.MelSpectrogram(self.sample_rate, n_fft=self.n_fft, hop_length=self.hop_length,
                                                        n_mels=self.channels, f_max=self.f_max_hz, power=1.0)
        self.inverse_mel = torchaudio.transforms.InverseMelScale(self.n_fft // 2 + 1, self.channels, self.sample_rate,
                                                                 f_max=self.f_max_hz)
        self.griffin_lim = torchaudio.transforms.GriffinLim(n_fft=self.n_fft, hop_length=self.hop_length, power=1.0,
                                                            n_iter=self.griffin_lim_iters)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    def fingerprint(self) -> str:
        spec = f"mel:{self.sample_rate}:{self.channels}:{self.hop_length}:{self.n_fft}:{self.f_max_hz}"
        return hashlib.sha256(spec.encode()).hexdigest()[:16]

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, 1, T)`` audio -> ``(B, n_mels, T // hop + 1)`` log-mel frames."""
        return torch.log(self.mel(audio[:, 0].float()).clamp_min(LOG_FLOOR))

    @torch.no_grad()
    def decode(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, n_mels, F)`` log-mel frames -> ``(B, 1, (F - 1) * hop)`` audio (Griffin-Lim, fixed seed)."""
        magnitude = self.inverse_mel(torch.exp(frames.float())).clamp_min(0.0)
        # GriffinLim starts from random phases: a fixed seed keeps the same frames -> the same audio,
        # without touching the caller's random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            audio = self.griffin_lim(magnitude)
        return audio[:, None]


class CodecFeatures(torch.nn.Module):
    """The library codec's latents (its decoder is the vocoder)."""

    def __init__(self, codec: torch.nn.Module):
        super().__init__()
        self.codec = codec

    @property
    def sample_rate(self) -> int:
        return int(self.codec.sample_rate)

    @property
    def channels(self) -> int:
        return int(self.codec.config.latent_channels)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.codec.config.hop_length

    def fingerprint(self) -> str:
        """A short hash of the encoder's weights (a cache is valid only for the same latent space)."""
        h = hashlib.sha256()
        for name, value in sorted(self.codec.state_dict().items()):
            if name.startswith(("encoder", "bottleneck")):
                h.update(name.encode())
                h.update(value.detach().cpu().float().numpy().tobytes())
        return h.hexdigest()[:16]

    @torch.no_grad()
    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        return self.codec.encode(audio)

    @torch.no_grad()
    def decode(self, frames: torch.Tensor) -> torch.Tensor:
        return self.codec.decode(frames)


def _hz_to_mel(f_hz: torch.Tensor) -> torch.Tensor:
    return 2595.0 * torch.log10(1.0 + f_hz / 700.0)          # the HTK mel scale torchaudio's filter bank uses


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def warp_mel_frames(frames: torch.Tensor, factors: torch.Tensor, f_max_hz: float = 8000.0) -> torch.Tensor:
    """Scale the frequency axis of log-mel frames: a higher or lower, larger or smaller voice.

    Each band ``k`` (centre ``f_k`` Hz) takes the value the input has at ``f_k / factor`` (linear
    interpolation between bands, the edge bands held beyond the ends), which moves harmonics and
    formants together by ``factor`` (vocal-tract-length perturbation in the mel domain). Used as
    training augmentation so the model learns to read a voice from its prompt.

    Args:
        frames: ``(B, n_mels, T)`` log-mel frames.
        factors: ``(B,)`` frequency factors (1: unchanged).
        f_max_hz: top of the filter bank (bands are evenly spaced in mel from 0 Hz).
    """
    b, n, _ = frames.shape
    top = _hz_to_mel(torch.tensor(float(f_max_hz)))
    spacing = top / (n + 1)
    centres_hz = _mel_to_hz(spacing * torch.arange(1, n + 1, dtype=torch.float32))           # (n,)
    source = _hz_to_mel(centres_hz[None, :] / factors.float().cpu()[:, None]) / spacing - 1.0  # (B, n)
    source = source.clamp(0.0, n - 1.0).to(frames.device)
    low = source.floor().long().clamp(max=n - 2)
    weight = (source - low.float()).unsqueeze(-1).to(frames.dtype)
    gather = lambda index: torch.gather(frames, 1, index.unsqueeze(-1).expand(-1, -1, frames.shape[-1]))  # noqa: E731
    return gather(low) * (1.0 - weight) + gather(low + 1) * weight


def tilt_mel_frames(frames: torch.Tensor, coefficients: torch.Tensor) -> torch.Tensor:
    """Add a smooth equaliser curve to log-mel frames: ``sum_j c_j cos(pi j (k + 1/2) / n)`` over bands ``k``.

    A different microphone, room colour or vocal-tract resonance balance; used with
    :func:`warp_mel_frames` as training augmentation.

    Args:
        frames: ``(B, n_mels, T)`` log-mel frames.
        coefficients: ``(B, J)`` curve coefficients in natural-log units (J cosines, j = 1..J).
    """
    n = frames.shape[1]
    j = torch.arange(1, coefficients.shape[1] + 1, dtype=torch.float32)
    k = torch.arange(n, dtype=torch.float32) + 0.5
    basis = torch.cos(torch.pi * j[:, None] * k[None, :] / n)                     # (J, n)
    curve = coefficients.float().cpu() @ basis                                     # (B, n)
    return frames + curve.to(frames)[:, :, None]


def mel_features(config) -> MelFeatures:
    """The :class:`MelFeatures` a ``"mel"`` :class:`~sds_audio.tts.config.TTSConfig` describes."""
    return MelFeatures(config.sample_rate, config.latent_channels, round(config.sample_rate / config.latent_rate),
                       config.mel_fft, config.mel_f_max_hz, config.griffin_lim_iters)


def load_features(config, codec_path: str | os.PathLike | None = None) -> torch.nn.Module:
    """The frame space of ``config`` (``codec_path``: the codec of ``"codec"`` features; default the shipped one)."""
    if config.features == "mel":
        return mel_features(config).eval()
    from ..codec import load_codec

    return CodecFeatures(load_codec(codec_path).eval().requires_grad_(False))


__all__ = ["CodecFeatures", "LOG_FLOOR", "MelFeatures", "load_features", "mel_features", "tilt_mel_frames", "warp_mel_frames"]
