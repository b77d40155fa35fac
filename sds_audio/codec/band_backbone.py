"""The codec's band backbone: 2-D convolutions over (frequency, time), latents per frequency band.

The STFT backbone (:mod:`~sds_audio.codec.stft_backbone`) turns each latent frame
into a whole spectrum through one dense read-out. To draw a partial at bin ``k``
its trunk must put the right pattern in a 384-d vector that a 384 -> 1,539 matrix
maps onto the bins; trained on the corpus for 10,000 CPU steps it learned spread,
flat spectra for sustained tones. This backbone is local in frequency, like an
image VAE over a spectrogram: the same small convolutions run at every frequency,
and a partial at bin ``k`` is drawn by the features of the band that holds ``k``.

Layout (``P = band_patch_bins``, ``K = stft_frames_per_latent``, ``n_fft / 2`` bins;
the Nyquist bin is dropped and comes back silent):

Encoder: the STFT backbone's input maps (log magnitude, and with
``stft_phase="accumulated"`` the phase-advance 2-vector) as an image
``(C * F, bins, frames)``; a patch conv ``(P, K)`` with stride ``(P, K)`` to
``encoder_channels / 2`` channels on a grid of ``bins / P`` patches x ``L`` latent
frames; ``band_fine_blocks`` 2-D ConvNeXt blocks; a strided conv down to
``band_count`` bands and ``encoder_channels`` channels; ``encoder_blocks`` blocks;
a 1x1 conv to ``groups * max(band_latent_channels)`` channels per band (``groups`` = 2
for the VAE's means and scales, 1 otherwise), of which band ``j`` keeps its first
``band_latent_channels[j]`` per group (:func:`latent_rows`). The latent ``(B, D, L)``
lists them group by group, channel index outer, band inner; with the same count in
every band that is channel ``c`` of band ``j`` at row ``c * band_count + j``.

Decoder: the mirror image (a band's missing channels are zeros); its 1x1 read-out
gives, per patch cell, the log magnitude and phase 2-vector of its ``P`` bins x ``K``
frames, shared by every band. Phase is made as in the STFT backbone (``stft_phase``), and the audio comes
from :func:`~sds_audio.codec.stft_backbone.spectrum_to_audio`. Each grid level adds
a learned per-row bias, so a band knows where in the spectrum it sits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import CodecConfig
from .stft_backbone import _at_least_fp32, spectrum_to_audio, stft_feature_maps


class ConvNeXtBlock2d(nn.Module):
    """Depthwise ``(kf, kt)`` conv -> LayerNorm -> pointwise MLP (GELU) -> layer scale, residual; ``(B, W, F, L)``."""

    def __init__(self, width: int, kernel: tuple[int, int] = (5, 7), mlp_ratio: float = 2.0,
                 layer_scale: float = 0.1):
        super().__init__()
        self.dwconv = nn.Conv2d(width, width, kernel, padding=(kernel[0] // 2, kernel[1] // 2), groups=width)
        self.norm = nn.LayerNorm(width, eps=1e-6)
        hidden = int(width * mlp_ratio)
        self.pw1 = nn.Linear(width, hidden)
        self.pw2 = nn.Linear(hidden, width)
        self.gamma = nn.Parameter(torch.full((width,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last: oneDNN's depthwise conv (and its backward) is ~3x faster on CPU that way,
        # and the permutes around the channel MLP become free
        x = x.contiguous(memory_format=torch.channels_last)
        h = self.dwconv(x).permute(0, 2, 3, 1)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).permute(0, 3, 1, 2)


class _Stage(nn.Module):
    """Per-row bias (frequency position) + ConvNeXt blocks at one grid level."""

    def __init__(self, width: int, rows: int, blocks: int):
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, width, rows, 1))
        self.blocks = nn.Sequential(*[ConvNeXtBlock2d(width) for _ in range(blocks)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x + self.position)


class _ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of ``(B, W, F, L)``."""

    def __init__(self, width: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _grid(config: CodecConfig) -> tuple[int, int, int]:
    """``(patches, bands, patches per band)`` of the frequency axis."""
    patches = (config.stft_n_fft // 2) // config.band_patch_bins
    return patches, config.band_count, patches // config.band_count


def latent_rows(per_band: tuple[int, ...], groups: int) -> torch.Tensor:
    """Rows of the flattened ``(groups * max(per_band), bands)`` grid that make the latent, in order.

    Grid row ``(g * max + c) * bands + j`` is channel ``c`` of group ``g`` in band ``j``;
    band ``j`` keeps the channels ``c < per_band[j]``.
    """
    bands, widest = len(per_band), max(per_band)
    return torch.tensor([(g * widest + c) * bands + j for g in range(groups) for c in range(widest)
                         for j in range(bands) if c < per_band[j]], dtype=torch.long)


class BandEncoder(nn.Module):
    """``(B, C, T)`` with ``T % hop_length == 0`` -> ``(B, out_channels, T / hop_length)``."""

    def __init__(self, config: CodecConfig, out_channels: int):
        super().__init__()
        allocation = config.latent_channels_per_band
        if out_channels % config.latent_channels:
            raise ValueError(f"out_channels {out_channels} is not a multiple of latent_channels {config.latent_channels}")
        groups = out_channels // config.latent_channels
        self.n_fft = config.stft_n_fft
        self.phase_features = config.stft_phase == "accumulated"
        patches, bands, per_band = _grid(config)
        fine, coarse = config.encoder_channels // 2, config.encoder_channels
        n_in = config.channels * (3 if self.phase_features else 1)
        self.stem = nn.Conv2d(n_in, fine, (config.band_patch_bins, config.stft_frames_per_latent),
                              stride=(config.band_patch_bins, config.stft_frames_per_latent))
        self.fine = _Stage(fine, patches, config.band_fine_blocks)
        self.down = nn.Sequential(_ChannelNorm(fine), nn.Conv2d(fine, coarse, (per_band, 1), stride=(per_band, 1)))
        self.coarse = _Stage(coarse, bands, config.encoder_blocks)
        self.norm = _ChannelNorm(coarse)
        self.net = nn.Sequential(nn.Conv2d(coarse, groups * max(allocation), 1))  # net[-1]: the output conv
        self.register_buffer("rows", latent_rows(allocation, groups), persistent=False)
        self.bins = config.stft_n_fft // 2

    def features(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> ``(B, C * F, n_fft / 2, T / hop)``: the STFT backbone's maps without the Nyquist bin."""
        b, c, _ = audio.shape
        feats = stft_feature_maps(audio, self.n_fft, self.phase_features)[:, :, :self.bins]
        return feats.reshape(b, c * feats.shape[1], self.bins, feats.shape[-1])

    def encode_features(self, feats: torch.Tensor) -> torch.Tensor:
        """``(B, C * F, n_fft / 2, frames)`` maps (see :meth:`features`) -> ``(B, out_channels, frames / K)``."""
        h = self.coarse(self.down(self.fine(self.stem(feats))))
        h = self.net(self.norm(h))                                        # (B, groups * widest, bands, L)
        return h.reshape(h.shape[0], -1, h.shape[-1])[:, self.rows]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.encode_features(self.features(audio))


class BandDecoder(nn.Module):
    """``(B, D, L)`` -> ``(B, C, L * hop_length)`` through a predicted complex STFT and ``torch.istft``."""

    def __init__(self, config: CodecConfig):
        super().__init__()
        self.n_fft = config.stft_n_fft
        self.channels = config.channels
        self.p, self.k = config.band_patch_bins, config.stft_frames_per_latent
        patches, self.bands, per_band = _grid(config)
        fine, coarse = config.decoder_channels // 2, config.decoder_channels
        allocation = config.latent_channels_per_band
        self.widest = max(allocation)
        self.register_buffer("rows", latent_rows(allocation, 1), persistent=False)
        self.inp = nn.Conv2d(self.widest, coarse, 3, padding=1)
        self.coarse = _Stage(coarse, self.bands, config.decoder_blocks)
        self.up = nn.Sequential(_ChannelNorm(coarse),
                                nn.ConvTranspose2d(coarse, fine, (per_band, 1), stride=(per_band, 1)))
        self.fine = _Stage(fine, patches, config.band_fine_blocks)
        self.norm = _ChannelNorm(fine)
        self.out = nn.Conv2d(fine, config.channels * 3 * self.p * self.k, 1)
        self.accumulate = config.stft_phase == "accumulated"
        if self.accumulate:
            # start near "no advance beyond the bin centre" (angle of (3, small) ~ 0), i.e. coherent partials
            with torch.no_grad():
                self.out.bias.view(config.channels, 3, self.p * self.k)[:, 1].fill_(3.0)

    def spectrum(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(B, D, L)`` -> predicted ``(logmag, re, im)``, each ``(B * C, n_fft / 2, L * K)``."""
        b, _, n = z.shape
        grid = z.new_zeros(b, self.widest * self.bands, n).index_copy(1, self.rows, z)
        h = self.inp(grid.reshape(b, self.widest, self.bands, n))
        h = self.norm(self.fine(self.up(self.coarse(h))))
        h = _at_least_fp32(self.out(h))                                   # (B, C * 3 * P * K, patches, L)
        patches = h.shape[2]
        h = h.reshape(b, self.channels, 3, self.p, self.k, patches, n)
        h = h.permute(0, 1, 2, 5, 3, 6, 4).reshape(b * self.channels, 3, patches * self.p, n * self.k)
        logmag, re, im = h.unbind(1)
        return logmag, re, im

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        audio = spectrum_to_audio(*self.spectrum(z), self.n_fft, self.accumulate)
        return audio.reshape(z.shape[0], self.channels, -1)
