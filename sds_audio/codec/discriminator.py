"""Multi-scale STFT discriminator (EnCodec style) for the codec's adversarial loss.

Each scale takes the complex STFT of the audio (``torchaudio.transforms.
Spectrogram(power=None)``, Hann window, normalised), stacks real and imaginary
parts as input channels, and runs a small stack of weight-normalised 2-D
convolutions over ``(frames, frequency bins)``: dilations grow along time,
strides halve the frequency axis (four times). It returns a map of logits and the
intermediate feature maps (for the feature-matching loss).

Shapes: audio ``(B, C, T)``; scale ``n_fft`` sees ``(B, 2C, frames, n_fft/2+1)``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torchaudio
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

DEFAULT_DISC_N_FFTS: tuple[int, ...] = (256, 512, 1024)


class STFTDiscriminator(nn.Module):
    """One resolution of the multi-scale STFT discriminator.

    Args:
        n_fft: window and FFT size in samples (hop ``n_fft // 4``).
        channels: width of the conv stack.
        audio_channels: channels ``C`` of the audio.
        time_dilations: dilations (along frames) of the strided layers.
        negative_slope: LeakyReLU slope.
    """

    def __init__(self, n_fft: int, channels: int = 16, audio_channels: int = 1,
                 time_dilations: Sequence[int] = (1, 2, 4), negative_slope: float = 0.2):
        super().__init__()
        self.n_fft = int(n_fft)
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=n_fft, hop_length=n_fft // 4, win_length=n_fft, power=None, normalized=True, center=True,
            pad_mode="constant")
        # every layer but the last halves the frequency axis: the first one too, which keeps the
        # cost per scale ~1/3 of a full-resolution first layer (the codec itself is cheap, so an
        # EnCodec-sized discriminator would dominate a CPU training step)
        layers = [weight_norm(nn.Conv2d(2 * audio_channels, channels, (3, 9), stride=(1, 2), padding=(1, 4)))]
        for d in time_dilations:
            layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 9), stride=(1, 2), dilation=(d, 1),
                                                padding=(d, 4))))
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.layers = nn.ModuleList(layers)
        self.out = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))
        self.activation = nn.LeakyReLU(negative_slope)

    def spectrum(self, audio: torch.Tensor) -> torch.Tensor:
        """``(B, C, T)`` -> real/imaginary stack ``(B, 2C, frames, bins)``."""
        spec = self.spectrogram(audio)                      # (B, C, bins, frames) complex
        spec = torch.cat([spec.real, spec.imag], dim=1)      # (B, 2C, bins, frames)
        return spec.transpose(2, 3)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(B, C, T)`` -> ``(logits (B, 1, frames, bins'), [feature maps])``."""
        x = self.spectrum(audio)
        features = []
        for layer in self.layers:
            x = self.activation(layer(x))
            features.append(x)
        return self.out(x), features


class MultiScaleSTFTDiscriminator(nn.Module):
    """One :class:`STFTDiscriminator` per FFT size.

    ``forward(audio)`` returns ``(logits, features)``: a list with one logit map
    per scale and a list (per scale) of lists of feature maps.
    """

    def __init__(self, n_ffts: Sequence[int] = DEFAULT_DISC_N_FFTS, channels: int = 16, audio_channels: int = 1):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, channels, audio_channels) for n in n_ffts)

    def forward(self, audio: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        logits, features = [], []
        for disc in self.discriminators:
            out, feats = disc(audio)
            logits.append(out)
            features.append(feats)
        return logits, features
