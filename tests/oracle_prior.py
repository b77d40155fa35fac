"""A test prior with an exact autoencoder whose ``denoise`` returns fixed targets.

Shared by the SDS and task tests: with it, SDS must pull a render toward the
target, so optimisation results can be checked against a known answer.
"""

from __future__ import annotations

import torch

from sds_audio.errors import SDSAudioError
from sds_audio.priors.base import Conditioning, Prior

RATE = 8000


class OraclePrior(Prior):
    """Exact framing autoencoder; ``denoise`` returns the encoding of fixed targets (one per batch item)."""

    name = "oracle"

    def __init__(self, target: torch.Tensor, sample_rate: int = RATE, hop: int = 16):
        self.sample_rate, self.channels, self.hop = sample_rate, 1, hop
        self.latent_channels, self.latent_rate, self.max_duration_s = hop, sample_rate / hop, 10.0
        self.target_latent = self.encode(target)
        self.conditions: list[tuple] = []

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def latent_length(self, n_samples: int) -> int:
        return -(-n_samples // self.hop)

    def encode(self, audio: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.pad(audio, (0, self.latent_length(audio.shape[-1]) * self.hop - audio.shape[-1]))
        return x.reshape(x.shape[0], -1, self.hop).transpose(1, 2)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return latents.transpose(1, 2).reshape(latents.shape[0], 1, -1)

    def condition(self, prompt, negative=None, seconds=None):
        if not prompt.strip():
            raise SDSAudioError("empty prompt")
        self.conditions.append((prompt, negative, seconds))
        return Conditioning(prompt, negative, seconds or 0.0, {})

    def sigma(self, t):
        return t

    def add_noise(self, latents, noise, t):
        t = t.reshape(-1, 1, 1)
        return (1 - t) * latents + t * noise

    def noise_from_x0(self, noisy, x0_hat, t):
        t = t.reshape(-1, 1, 1)
        return (noisy - (1 - t) * x0_hat) / t

    def denoise(self, noisy, t, cond, guidance_scale=7.0, steps=1):
        return self.target_latent.repeat(noisy.shape[0] // self.target_latent.shape[0], 1, 1)
