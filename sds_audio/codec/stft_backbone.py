"""The codec's STFT backbone: encoder and decoder that run at the frame rate (Vocos-style).

The convolutional backbone (:mod:`~sds_audio.codec.model`) runs its first and
last stages near the audio rate, which is what makes it expensive to train on a
CPU. This backbone lets an STFT do that work instead:

Encoder: ``|STFT|`` (``n_fft``, hop ``n_fft / 4``, Hann) of the audio, log-compressed,
and (``stft_phase="accumulated"``) each bin's phase advance since the previous frame
relative to the advance of the bin's centre frequency, as a 2-vector that fades to
zero in quiet bins; the ``frames_per_latent`` STFT frames under each latent frame are
stacked into channels; a 1x1 conv, ``encoder_blocks`` ConvNeXt blocks, and a conv to
the bottleneck's input.

Decoder: a conv from the latents, ``decoder_blocks`` ConvNeXt blocks, and a 1x1 conv
to, per STFT frame and bin, a log-magnitude and an angle (as an unnormalised
2-vector). With ``stft_phase="accumulated"`` the angle is the frame's phase advance
beyond the bin's centre frequency and the phase is the running sum of advances: a
steady partial needs the same prediction in every frame, which a convolution can
give, and its overlapping frames add up in phase. With ``"free"`` the angle is the
phase itself, which for a steady partial must grow linearly with the frame index;
a convolution cannot follow that over long spans, and the overlap-add partly
cancels sustained tones (the first STFT codecs lost 10-100x of the level of
harmonicas and recorders that way). The complex spectrum goes through
``torch.istft``. Every layer runs at 43 frames per second (22050 Hz, hop 512), so a
second of audio costs a few hundred MFLOPs instead of gigaflops.

Both are differentiable end to end; the decoder's output length is exactly
``L * hop_length`` samples.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import CodecConfig

LOG_FLOOR = 1e-5  # magnitude floor before the log (about -100 dB re. full scale per bin)
ADVANCE_FLOOR = 1e-6  # |X[n] X[n-1]| scale under which the encoder's phase-advance feature fades to zero
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


def bin_advance_rad(n_fft: int, hop: int, dtype: torch.dtype = torch.float64,
                    device: torch.device | None = None) -> torch.Tensor:
    """``(n_fft // 2 + 1, 1)``: phase advance per hop of each bin's centre frequency, wrapped to [0, 2 pi)."""
    k = torch.arange(n_fft // 2 + 1, device=device, dtype=torch.int64)
    return (2 * torch.pi * ((k * hop) % n_fft) / n_fft).to(dtype).unsqueeze(-1)


def phase_advance_features(spec: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """``(..., bins, frames)`` complex STFT -> ``(..., 2, bins, frames)`` phase-advance 2-vectors.

    ``u = X[n] conj(X[n-1]) exp(-i w_k) / (|.| + ADVANCE_FLOOR)``: a unit vector at the
    angle by which bin ``k`` turned beyond its centre frequency ``w_k`` since the
    previous frame, shrinking to zero where the bin is quiet (frame 0 has no previous
    frame and gets zero).
    """
    prev = F.pad(spec[..., :-1], (1, 0))
    centre = bin_advance_rad(n_fft, hop, spec.real.dtype, spec.device)     # (bins, 1), broadcast over frames
    z = spec * prev.conj() * torch.polar(torch.ones_like(centre), -centre)
    u = z / (z.abs() + ADVANCE_FLOOR)
    return torch.stack([u.real, u.imag], dim=-3)


def stft_feature_maps(audio: torch.Tensor, n_fft: int, phase_features: bool) -> torch.Tensor:
    """``(B, C, T)`` -> ``(B * C, F, n_fft / 2 + 1, T // hop)`` encoder input maps, hop ``n_fft / 4``.

    ``F = 1``: the log magnitude (floored at :data:`LOG_FLOOR`); ``F = 3`` (``phase_features``):
    plus the phase-advance 2-vector of :func:`phase_advance_features`. Frames are centred,
    with reflect padding at the ends (zeros when the clip is shorter than half a window);
    frame ``n`` covers samples around ``n * hop``.
    """
    b, c, t = audio.shape
    hop = n_fft // 4
    x = _at_least_fp32(audio.reshape(b * c, t))
    pad_mode = "reflect" if t > n_fft // 2 else "constant"
    spec = torch.stft(x, n_fft, hop, window=_window(n_fft, x), center=True, pad_mode=pad_mode,
                      return_complex=True)
    spec = spec[..., :t // hop]                                           # (B*C, bins, n_frames)
    feats = torch.log(spec.abs() + LOG_FLOOR).unsqueeze(1)
    if phase_features:
        feats = torch.cat([feats, phase_advance_features(spec, n_fft, hop)], dim=1)
    return feats


def spectrum_to_audio(logmag: torch.Tensor, re: torch.Tensor, im: torch.Tensor, n_fft: int,
                      accumulate: bool) -> torch.Tensor:
    """Decoder predictions ``(N, bins, frames)`` -> audio ``(N, frames * hop)`` through ``torch.istft``.

    ``mag = exp(logmag)`` (clamped at :data:`MAX_LOG_MAGNITUDE`). ``accumulate``: the angle of
    ``(re, im)`` is each frame's phase advance beyond the bin's centre frequency and the phase
    is the running sum (float64, wrapped); otherwise the angle is the phase itself. ``bins``
    may stop short of ``n_fft / 2 + 1``: the missing top bins are silent.
    """
    hop = n_fft // 4
    n_bins = n_fft // 2 + 1
    mag = torch.exp(logmag.clamp(max=MAX_LOG_MAGNITUDE))
    if accumulate:
        centre = bin_advance_rad(n_fft, hop, torch.float64, logmag.device)[:logmag.shape[-2]]
        advance = centre + torch.atan2(im, re).double()
        phase = torch.remainder(torch.cumsum(advance, dim=-1), 2 * torch.pi).to(mag.dtype)
        spec = torch.polar(mag, phase)
    else:
        norm = torch.sqrt(re.square() + im.square() + 1e-8)               # phase = angle of (re, im)
        spec = torch.complex(mag * re / norm, mag * im / norm)
    # silent missing top bins, and one extra (silent) frame so the centred inverse STFT covers the last hop
    spec = F.pad(spec, (0, 1, 0, n_bins - spec.shape[-2]))
    n_frames = logmag.shape[-1]
    return torch.istft(spec, n_fft, hop, window=_window(n_fft, spec.real), center=True, length=n_frames * hop)


class STFTEncoder(nn.Module):
    """``(B, C, T)`` with ``T % hop_length == 0`` -> ``(B, out_channels, T / hop_length)``."""

    def __init__(self, config: CodecConfig, out_channels: int):
        super().__init__()
        self.n_fft = config.stft_n_fft
        self.hop = config.stft_n_fft // 4
        self.k = config.stft_frames_per_latent
        self.phase_features = config.stft_phase == "accumulated"
        width = config.encoder_channels
        n_in = config.channels * (self.n_fft // 2 + 1) * self.k * (3 if self.phase_features else 1)
        layers: list[nn.Module] = [nn.Conv1d(n_in, width, 1)]
        layers += [ConvNeXtBlock(width) for _ in range(config.encoder_blocks)]
        layers += [nn.LayerNorm(width, eps=1e-6)]
        self.blocks = nn.Sequential(*layers[:-1])
        self.norm = layers[-1]
        self.net = nn.Sequential(nn.Conv1d(width, out_channels, 3, padding=1))  # net[-1]: the output conv

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, C * F * bins * k, T / hop_length)``: per bin the log magnitude
        (``F = 1``), plus the phase-advance 2-vector (``F = 3``, ``stft_phase="accumulated"``)."""
        b, c, _ = audio.shape
        feats = stft_feature_maps(audio, self.n_fft, self.phase_features)  # (B*C, F, bins, n_frames)
        _, f, bins, n_frames = feats.shape
        feats = feats.reshape(b, c, f, bins, n_frames // self.k, self.k)  # group k frames per latent frame
        return feats.permute(0, 1, 5, 2, 3, 4).reshape(b, c * self.k * f * bins, n_frames // self.k)

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
        self.accumulate = config.stft_phase == "accumulated"
        if self.accumulate:
            # start near "no advance beyond the bin centre" (angle of (3, small) ~ 0), i.e. coherent partials
            with torch.no_grad():
                self.out.bias.view(config.channels, self.k, 3, self.bins)[:, :, 1].fill_(3.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        b, _, n = z.shape
        h = self.blocks(self.inp(z))
        h = self.norm(h.transpose(1, 2)).transpose(1, 2)
        h = _at_least_fp32(self.out(h)).reshape(b, self.channels, self.k, 3, self.bins, n)
        h = h.permute(0, 1, 3, 4, 5, 2).reshape(b * self.channels, 3, self.bins, n * self.k)
        logmag, re, im = h.unbind(1)
        audio = spectrum_to_audio(logmag, re, im, self.n_fft, self.accumulate)
        return audio.reshape(b, self.channels, -1)
