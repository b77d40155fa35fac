"""The codec's bottlenecks: a Gaussian VAE posterior and a residual vector quantiser.

**VAE** (the kind Stable Audio's diffusion runs on). The encoder emits
``2 * D`` channels, split into a mean and a raw scale; the standard deviation is
``softplus(raw) + min_std``. Training decodes a sample
``z = mean + std * eps``; :meth:`Codec.encode` returns the mean (deterministic).
The KL divergence to a standard normal, per element::

    KL(N(m, s^2) || N(0, 1)) = 0.5 * (m^2 + s^2 - 1 - log s^2)

is summed over latent channels and averaged over batch and frames.

**RVQ** (SoundStream / EnCodec). ``n`` codebooks quantise the residual left
by the previous ones; the output is the sum of the selected codewords.
Codebooks are updated by exponential moving averages of the encoder outputs
assigned to each code (no gradient); the encoder gets the straight-through
gradient plus a commitment loss ``mean((x - stopgrad(q))^2)`` per stage; codes
whose EMA usage falls below a threshold are refreshed with random encoder
outputs from the current batch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def gaussian_kl(mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, std^2) || N(0, 1)), summed over channels (dim 1), averaged over the rest.

    Args:
        mean, std: ``(B, D, L)``; ``std > 0``.

    Returns:
        scalar tensor (nats per latent frame).
    """
    var = std.pow(2)
    kl = 0.5 * (mean.pow(2) + var - 1.0 - torch.log(var))
    return kl.sum(dim=1).mean()


class VAEBottleneck(nn.Module):
    """Split encoder output ``(B, 2D, L)`` into posterior ``mean, std`` (each ``(B, D, L)``).

    Args:
        min_std: floor added after the softplus so ``log std^2`` stays finite.
        initial_std: posterior std of a freshly initialised encoder (see
            :meth:`init_scale_bias`).
    """

    def __init__(self, min_std: float = 1e-4, initial_std: float = 0.02):
        super().__init__()
        self.min_std = float(min_std)
        self.initial_std = float(initial_std)

    @torch.no_grad()
    def init_scale_bias(self, bias: torch.Tensor, latent_channels: int) -> None:
        """Set the scale half of the encoder's output bias so the posterior std starts at ``initial_std``.

        A fresh encoder's means are small (~0.1); with the plain
        ``softplus(0) = 0.69`` the decoder would first see mostly noise and a
        short training run would barely learn. Starting small lets the
        reconstruction loss shape the latents first; the KL term then sets the
        posterior width.
        """
        bias[latent_channels:] = math.log(math.expm1(self.initial_std - self.min_std))

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw_scale = h.chunk(2, dim=1)
        std = F.softplus(raw_scale) + self.min_std
        return mean, std

    @staticmethod
    def sample(mean: torch.Tensor, std: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Reparameterised draw ``mean + std * eps``, ``eps ~ N(0, 1)`` from ``generator``."""
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + std * eps


class VectorQuantizer(nn.Module):
    """One codebook ``(K, D)`` with EMA updates and dead-code refresh.

    Buffers: ``codebook (K, D)``, ``cluster_size (K,)`` (EMA of assignment
    counts), ``embed_sum (K, D)`` (EMA of summed assigned vectors),
    ``initialised`` (the first training batch seeds the codebook).
    """

    def __init__(self, dim: int, codebook_size: int, decay: float = 0.99, dead_code_threshold: float = 1.0,
                 eps: float = 1e-5):
        super().__init__()
        self.dim = int(dim)
        self.codebook_size = int(codebook_size)
        self.decay = float(decay)
        self.dead_code_threshold = float(dead_code_threshold)
        self.eps = float(eps)
        init = torch.randn(codebook_size, dim)
        self.register_buffer("codebook", init)
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("embed_sum", init.clone())
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    def nearest(self, x: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codewords for rows of ``x (N, D)`` -> ``(N,)`` int64."""
        dist = (x.pow(2).sum(1, keepdim=True) - 2.0 * x @ self.codebook.t()
                + self.codebook.pow(2).sum(1).unsqueeze(0))
        return dist.argmin(dim=1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, L)`` -> codewords ``(B, D, L)``."""
        return F.embedding(codes, self.codebook).transpose(1, 2)

    @staticmethod
    def _random_rows(x: torch.Tensor, n: int, generator: torch.Generator | None) -> torch.Tensor:
        idx = torch.randint(0, x.shape[0], (n,), generator=generator, device=x.device)
        return x[idx]

    @torch.no_grad()
    def refresh_dead_codes(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Replace codes with EMA usage below the threshold by random rows of ``x (N, D)``.

        Returns the boolean mask ``(K,)`` of replaced codes. A replaced code's
        usage count is reset to the threshold so it is not replaced again at once.
        """
        dead = self.cluster_size < self.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead:
            new = self._random_rows(x, n_dead, generator).to(self.codebook.dtype)
            self.codebook[dead] = new
            self.cluster_size[dead] = self.dead_code_threshold
            self.embed_sum[dead] = new * self.dead_code_threshold
        return dead

    @torch.no_grad()
    def ema_update(self, x: torch.Tensor, codes: torch.Tensor) -> None:
        """One EMA step of the codebook from rows ``x (N, D)`` assigned to ``codes (N,)``."""
        onehot = F.one_hot(codes, self.codebook_size).to(x.dtype)
        self.cluster_size.mul_(self.decay).add_(onehot.sum(0), alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(onehot.t() @ x, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed.unsqueeze(1))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantise ``x (B, D, L)``.

        Returns:
            ``(q, codes)``: codewords ``(B, D, L)`` (no gradient; the caller
            adds the straight-through path) and indices ``(B, L)``.
            In training mode the codebook is updated (EMA, dead codes refreshed)
            *after* the assignment, so ``q`` holds the codewords used for it.
        """
        b, d, n = x.shape
        flat = x.detach().transpose(1, 2).reshape(-1, d).float()
        if self.training and not bool(self.initialised):
            with torch.no_grad():
                self.codebook.copy_(self._random_rows(flat, self.codebook_size, generator))
                self.embed_sum.copy_(self.codebook)
                self.cluster_size.fill_(1.0)
                self.initialised.fill_(True)
        codes = self.nearest(flat)
        q = self.codebook[codes].view(b, n, d).transpose(1, 2).to(x.dtype)
        if self.training:
            self.ema_update(flat, codes)
            self.refresh_dead_codes(flat, generator)
        return q, codes.view(b, n)


@dataclass
class QuantizerOutput:
    """What :class:`ResidualVectorQuantizer` returns.

    ``quantized (B, D, L)``: ``x + stopgrad(sum_i q_i - x)`` (value = the sum
    of the selected codewords, gradient = identity); ``codes (B, n, L)``;
    ``commitment_loss``: ``sum_i mean((r_i - stopgrad(q_i))^2)`` over stages,
    with ``r_i`` the residual entering stage ``i``.
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor


class ResidualVectorQuantizer(nn.Module):
    """``n_codebooks`` :class:`VectorQuantizer` stages on successive residuals."""

    def __init__(self, dim: int, n_codebooks: int, codebook_size: int, decay: float = 0.99,
                 dead_code_threshold: float = 1.0):
        super().__init__()
        self.layers = nn.ModuleList(
            VectorQuantizer(dim, codebook_size, decay, dead_code_threshold) for _ in range(n_codebooks))

    @property
    def n_codebooks(self) -> int:
        return len(self.layers)

    def forward(self, x: torch.Tensor, n_active: torch.Tensor | int | None = None,
                generator: torch.Generator | None = None) -> QuantizerOutput:
        """Quantise ``x (B, D, L)`` with the first ``n_active`` codebooks.

        Args:
            n_active: ``None`` for all codebooks, an int, or a ``(B,)`` tensor
                (quantiser dropout: item ``b`` uses its first ``n_active[b]``
                stages; all stages still run and update their codebooks).
            generator: RNG for codebook initialisation and dead-code refresh.
        """
        b = x.shape[0]
        if n_active is None:
            n_active = self.n_codebooks
        if not torch.is_tensor(n_active):
            n_active = torch.full((b,), int(n_active), device=x.device)
        residual = x.detach()
        total = torch.zeros_like(x)
        commitment = x.new_zeros(())
        all_codes = []
        for i, layer in enumerate(self.layers):
            q, codes = layer(residual, generator=generator)
            keep = (n_active > i).to(x.dtype).view(b, 1, 1)
            # commitment: the gradient reaches x through the residual (x minus detached codewords)
            r_grad = x - (total.detach() if i else 0.0)
            commitment = commitment + ((r_grad - q.detach()).pow(2) * keep).mean()
            total = total + q * keep
            residual = residual - q
            all_codes.append(codes)
        quantized = x + (total - x).detach()
        return QuantizerOutput(quantized, torch.stack(all_codes, dim=1), commitment)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes ``(B, n, L)`` (``n <= n_codebooks``) -> sum of codewords ``(B, D, L)``."""
        if codes.dim() != 3 or codes.shape[1] > self.n_codebooks:
            raise ValueError(f"codes must be (B, n<={self.n_codebooks}, L), got {tuple(codes.shape)}")
        return sum(self.layers[i].lookup(codes[:, i]) for i in range(codes.shape[1]))
