"""The codec's STFT backbone: encoder and decoder that run at the frame rate (Vocos-style).

The convolutional backbone (:mod:`~sds_audio.codec.model`) runs its first and
last stages near the audio rate, which is what makes it expensive to train on a
CPU. This backbone lets an STFT do that work instead:

Encoder: ``|STFT|`` (``n_fft``, hop ``n_fft / 4``, Hann) of the audio, log-compressed;
the ``frames_per_latent`` STFT frames under each latent frame are stacked into
channels; a 1x1 conv, ``encoder_blocks`` ConvNeXt blocks, and a conv to the
bottleneck's input.

Decoder: a conv from the latents, ``decoder_blocks`` ConvNeXt blocks, and a 1x1 conv
to, per STFT frame and bin, a log-magnitude and a phase (as an unnormalised 2-vector
whose angle is the phase); the complex spectrum goes through ``torch.istft``. Every
layer runs at 43 frames per second (22050 Hz, hop 512), so a second of audio costs a
few hundred MFLOPs instead of gigaflops.

Both are differentiable end to end; the decoder's output length is exactly
``L * hop_length`` samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import CodecConfig

LOG_FLOOR = 1e-5  # magnitude floor before the log (about -100 dB re. full scale per bin)
MAX_LOG_MAGNITUDE = 8.0  # exp(8) ~ 3000: above any bin of a full-scale signal with a 1024-point Hann window


class ConvNeXtBlock(nn.Module):
    """Depthwise conv (kernel 7) -> LayerNorm -> pointwise MLP (GELU) -> layer scale, residual; ``(B, W, L)``."""

    def __init__(self, width: int, mlp_ratio: float = 3.0, layer_scale: float = 0.1):
        super().__init__()
        self.dwconv = nn.Conv1d(width, width, 7, padding=3, groups=width)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.pw1 = nn.Linear(width, hidden)
        self.pw2 = nn.Linear(hidden, width)
        self.gamma = nn.Parameter(torch.full((width,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """STFTs run in float32 (or float64) even under fp16 / bf16 autocast."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _window(n_fft: int, like: torch.Tensor) -> torch.Tensor:
    return torch.hann_window(n_fft, device=like.device, dtype=like.dtype)


class STFTEncoder(nn.Module):
    """``(B, C, T)`` with ``T % hop_length == 0`` -> ``(B, out_channels, T / hop_length)``."""

    def __init__(self, config: CodecConfig, out_channels: int):
        super().__init__()
        self.n_fft = config.stft_n_fft
        self.hop = config.stft_n_fft // 4
        self.k = config.stft_frames_per_latent
        width = config.encoder_channels
        n_in = config.channels * (self.n_fft // 2 + 1) * self.k
        layers: list[nn.Module] = [nn.Conv1d(n_in, width, 1)]
        layers += [ConvNeXtBlock(width) for _ in range(config.encoder_blocks)]
        layers += [nn.LayerNorm(width, eps=1e-6)]
        self.blocks = nn.Sequential(*layers[:-1])
        self.norm = layers[-1]
        self.net = nn.Sequential(nn.Conv1d(width, out_channels, 3, padding=1))  # net[-1]: the output conv

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, C * bins * k, T / hop_length)`` log magnitudes."""
        b, c, t = audio.shape
        x = _at_least_fp32(audio.reshape(b * c, t))
        # centred frames; reflect padding at the ends (what training saw), zeros when the clip is too short
        pad_mode = "reflect" if t > self.n_fft // 2 else "constant"
        spec = torch.stft(x, self.n_fft, self.hop, window=_window(self.n_fft, x), center=True, pad_mode=pad_mode,
                          return_complex=True)
        n_frames = t // self.hop
        mag = spec.abs()[..., :n_frames]                                  # (B*C, bins, n_frames)
        logmag = torch.log(mag + LOG_FLOOR)
        bins = logmag.shape[1]
        logmag = logmag.reshape(b, c, bins, n_frames // self.k, self.k)   # group k frames per latent frame
        return logmag.permute(0, 1, 4, 2, 3).reshape(b, c * self.k * bins, n_frames // self.k)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.features(audio))
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        return self.net(h)


class STFTDecoder(nn.Module):
    """``(B, D, L)`` -> ``(B, C, L * hop_length)`` through a predicted complex STFT and ``torch.istft``."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.n_fft = config.stft_n_fft
        self.hop = config.stft_n_fft // 4
        self.k = config.stft_frames_per_latent
        self.channels = config.channels
        self.bins = self.n_fft // 2 + 1
        width = config.decoder_channels
        self.inp = nn.Conv1d(config.latent_channels, width, 3, padding=1)
        self.blocks = nn.Sequential(*[ConvNeXtBlock(width) for _ in range(config.decoder_blocks)])
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.out = nn.Conv1d(width, config.channels * self.k * self.bins * 3, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, _, n = z.shape
        h = self.blocks(self.inp(z))
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        h = _at_least_fp32(self.out(h)).reshape(b, self.channels, self.k, 3, self.bins, n)
        h = h.permute(0, 1, 3, 4, 5, 2).reshape(b * self.channels, 3, self.bins, n * self.k)
        logmag, re, im = h.unbind(1)
        mag = torch.exp(logmag.clamp(max=MAX_LOG_MAGNITUDE))
        norm = torch.sqrt(re.square() + im.square() + 1e-8)               # phase = angle of (re, im)
        spec = torch.complex(mag * re / norm, mag * im / norm)
        # one extra (silent) frame so the centred inverse STFT covers every sample of the last hop
        spec = F.pad(spec, (0, 1))
        audio = torch.istft(spec, self.n_fft, self.hop, window=_window(self.n_fft, spec.real), center=True,
                            length=n * self.k * self.hop)
        return audio.reshape(b, self.channels, -1)
