"""The four networks of the speech model: speaker encoder, text encoder, duration predictor, flow decoder.

The transformer layers are the flow prior's :class:`~sds_audio.flow.dit.DiTBlock`
(adaLN-Zero, rotary self-attention, padding masks), without cross-attention:
in the text encoder the adaLN vector is the speaker vector; in the decoder it
is the flow-time embedding plus the speaker vector. Shapes follow the library:
channels before time, ``(B, D, T)`` for latents, ``(B, N)`` for symbol ids.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..flow.dit import DiTBlock, modulate
from ..flow.embeddings import rotary_cos_sin, time_embedder
from .config import TTSConfig


def masked_mean_std(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and standard deviation of ``x`` ``(B, D, T)`` over the frames where ``mask`` ``(B, T)``."""
    w = mask.to(x.dtype).unsqueeze(1)
    n = w.sum(-1).clamp_min(1.0)
    mean = (x * w).sum(-1) / n
    var = ((x - mean.unsqueeze(-1)).pow(2) * w).sum(-1) / n
    return mean, (var + 1e-5).sqrt()


class SpeakerEncoder(nn.Module):
    """Voice prompt frames -> ``(B, width)`` speaker vector: per-channel mean and spread, then an MLP.

    Statistics of the normalised codec latents over the prompt carry the voice's spectral
    envelope and level, and need no speaker labels.
    """

    def __init__(self, latent_channels: int, width: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * latent_channels, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, z: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mean, std = masked_mean_std(z, mask)
        return self.mlp(torch.cat([mean, std.log()], dim=-1))


class ConvLayer(nn.Module):
    """Residual ``Conv1d -> GELU -> LayerNorm`` over ``(B, W, N)`` with padding zeroed."""

    def __init__(self, width: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2)
        self.norm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1).to(x.dtype)
        y = F.gelu(self.conv(x * m))
        return (x + self.norm(y.transpose(1, 2)).transpose(1, 2)) * m


class TextEncoder(nn.Module):
    """Symbol ids ``(B, N)`` -> hidden states ``(B, W, N)`` and latent-space means ``mu`` ``(B, D, N)``.

    ``mu`` is the prior of Grad-TTS / Matcha-TTS: the frames a symbol covers are modelled as
    ``N(mu_n, I)`` in normalised latent units, which is what monotonic alignment search scores.
    """

    def __init__(self, config: TTSConfig):
        super().__init__()
        w = config.text_width
        self.embed = nn.Embedding(config.n_symbols, w)
        nn.init.normal_(self.embed.weight, std=w ** -0.5)
        self.convs = nn.ModuleList(ConvLayer(w, 5) for _ in range(config.text_convs))
        self.speaker = nn.Linear(config.width, w)
        self.blocks = nn.ModuleList(DiTBlock(w, config.text_heads, 4 * w, cross_attention=False)
                                    for _ in range(config.text_depth))
        self.norm = nn.LayerNorm(w)
        self.to_mu = nn.Conv1d(w, config.latent_channels, 1)
        self.head_dim = w // config.text_heads
        self.rope_base = config.rope_base

    def forward(self, symbols: torch.Tensor, mask: torch.Tensor,
                speaker: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(symbols).transpose(1, 2) * mask.unsqueeze(1)
        for conv in self.convs:
            x = conv(x, mask)
        h = x.transpose(1, 2)
        c = self.speaker(speaker)
        cos, sin = rotary_cos_sin(h.shape[1], self.head_dim, self.rope_base, h.device, h.dtype)
        for block in self.blocks:
            h = block(h, c, None, None, cos, sin, key_mask=mask)
        h = (self.norm(h) * mask.unsqueeze(-1)).transpose(1, 2)
        return h, self.to_mu(h) * mask.unsqueeze(1)


class DurationPredictor(nn.Module):
    """Hidden states ``(B, W, N)`` -> ``log(1 + frames)`` per symbol ``(B, N)`` (two conv layers, as in FastSpeech)."""

    def __init__(self, in_width: int, width: int, kernel_size: int = 3, dropout: float = 0.1):
        super().__init__()
        self.conv1 = nn.Conv1d(in_width, width, kernel_size, padding=kernel_size // 2)
        self.norm1 = nn.LayerNorm(width)
        self.conv2 = nn.Conv1d(width, width, kernel_size, padding=kernel_size // 2)
        self.norm2 = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        self.out = nn.Conv1d(width, 1, 1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        m = mask.unsqueeze(1).to(h.dtype)
        x = self.drop(self.norm1(F.relu(self.conv1(h * m)).transpose(1, 2)).transpose(1, 2))
        x = self.drop(self.norm2(F.relu(self.conv2(x * m)).transpose(1, 2)).transpose(1, 2))
        return (self.out(x * m) * m).squeeze(1)


class FlowDecoder(nn.Module):
    """Velocity ``v(x_s, s | text frames, prompt, speaker)`` over normalised latent frames ``(B, D, T)``.

    Input per frame: the noisy latent, the prompt's clean latent (zero outside the prompt), the
    aligned text mean ``mu`` (zero on prompt frames and on text-dropped rows) and a prompt flag,
    projected to ``width``; adaLN-Zero blocks with padding masks; zero-initialised output.
    """

    def __init__(self, config: TTSConfig):
        super().__init__()
        w, d = config.width, config.latent_channels
        self.proj_in = nn.Linear(3 * d + 1, w)
        self.time_embed = time_embedder(w, config.time_features)
        self.blocks = nn.ModuleList(DiTBlock(w, config.heads, config.mlp_width, cross_attention=False)
                                    for _ in range(config.depth))
        self.norm_out = nn.LayerNorm(w, elementwise_affine=False, eps=1e-6)
        self.ada_out = nn.Sequential(nn.SiLU(), nn.Linear(w, 2 * w))
        self.proj_out = nn.Linear(w, d)
        for layer in (self.ada_out[1], self.proj_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.head_dim = w // config.heads
        self.rope_base = config.rope_base

    def forward(self, x: torch.Tensor, s: torch.Tensor, mu: torch.Tensor, prompt: torch.Tensor,
                prompt_mask: torch.Tensor, speaker: torch.Tensor, frame_mask: torch.Tensor) -> torch.Tensor:
        """
        Args:
            x: ``(B, D, T)`` latents at flow time ``s`` ``(B,)`` (0 noise, 1 data).
            mu: ``(B, D, T)`` aligned text means (already zeroed where the text is not given).
            prompt: ``(B, D, T)`` clean prompt latents (zero elsewhere).
            prompt_mask: ``(B, T)`` True on prompt frames.
            speaker: ``(B, width)`` speaker vector.
            frame_mask: ``(B, T)`` True on valid (non-padding) frames.

        Returns:
            ``(B, D, T)`` velocity, zero on padding frames.
        """
        flag = prompt_mask.unsqueeze(1).to(x.dtype)
        h = self.proj_in(torch.cat([x, prompt, mu, flag], dim=1).transpose(1, 2))
        s = torch.as_tensor(s, dtype=torch.float32, device=x.device).reshape(-1).expand(x.shape[0])
        c = self.time_embed(s) + speaker
        cos, sin = rotary_cos_sin(h.shape[1], self.head_dim, self.rope_base, x.device, h.dtype)
        for block in self.blocks:
            h = block(h, c, None, None, cos, sin, key_mask=frame_mask)
        shift, scale = self.ada_out(c).chunk(2, dim=-1)
        v = self.proj_out(modulate(self.norm_out(h), shift, scale)).transpose(1, 2)
        return v * frame_mask.unsqueeze(1).to(v.dtype)


__all__ = ["ConvLayer", "DurationPredictor", "FlowDecoder", "SpeakerEncoder", "TextEncoder", "masked_mean_std"]
