"""FlowCondition: the conditioning tensors one forward pass of the flow model reads.

Text comes from :class:`sds_audio.text.TextEncoder` (token embeddings, their
mask, the pooled sentence embedding); ``seconds`` is the duration of the sound
inside the latent window; ``drop`` marks rows whose text the model must replace
with its learned null embedding (the unconditional branch of classifier-free
guidance, and condition dropout in training). Duration is never dropped: both
guidance branches know how long the sound is, so guidance pushes only along
the text.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FlowCondition:
    """Batched conditioning.

    Attributes:
        tokens: ``(B, N, text_dim)`` text token embeddings (anything past a
            row's mask is ignored).
        mask: ``(B, N)`` bool, True on valid tokens (at least one per row
            unless the row is dropped).
        pooled: ``(B, text_dim)`` pooled sentence embedding.
        seconds: ``(B,)`` float, seconds of sound in the window.
        drop: ``(B,)`` bool, True where the text is replaced by the null embedding.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor
    seconds: torch.Tensor
    drop: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.tokens.shape[0]

    @classmethod
    def from_text(cls, tokens: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor,
                  seconds: torch.Tensor | float, drop: torch.Tensor | bool = False) -> "FlowCondition":
        """Build from a text encoder's output, broadcasting scalar ``seconds`` / ``drop`` to the batch."""
        b = tokens.shape[0]
        seconds = torch.as_tensor(seconds, dtype=torch.float32, device=tokens.device).reshape(-1).expand(b)
        drop = torch.as_tensor(drop, dtype=torch.bool, device=tokens.device).reshape(-1).expand(b)
        return cls(tokens, mask.bool(), pooled, seconds.clone(), drop.clone())

    @classmethod
    def unconditional(cls, batch_size: int, seconds: torch.Tensor | float, text_dim: int,
                      device: torch.device | str | None = None) -> "FlowCondition":
        """Rows with no text at all (all dropped): the model's null embedding."""
        tokens = torch.zeros(batch_size, 1, text_dim, device=device)
        mask = torch.zeros(batch_size, 1, dtype=torch.bool, device=device)
        pooled = torch.zeros(batch_size, text_dim, device=device)
        return cls.from_text(tokens, mask, pooled, seconds, drop=True)

    def repeat(self, n: int) -> "FlowCondition":
        """Each row repeated ``n`` times in place (``[a, a, b, b]`` for ``n = 2``)."""
        return FlowCondition(self.tokens.repeat_interleave(n, 0), self.mask.repeat_interleave(n, 0),
                             self.pooled.repeat_interleave(n, 0), self.seconds.repeat_interleave(n, 0),
                             self.drop.repeat_interleave(n, 0))

    def expand_to(self, batch_size: int) -> "FlowCondition":
        """Broadcast a one-row condition to ``batch_size`` rows (identity when sizes match)."""
        if self.batch_size == batch_size:
            return self
        if self.batch_size != 1:
            raise ValueError(f"cannot broadcast a condition of batch {self.batch_size} to {batch_size}")
        return self.repeat(batch_size)

    def with_seconds(self, seconds: torch.Tensor | float) -> "FlowCondition":
        """The same text with another duration."""
        seconds = torch.as_tensor(seconds, dtype=torch.float32, device=self.tokens.device).reshape(-1)
        return FlowCondition(self.tokens, self.mask, self.pooled, seconds.expand(self.batch_size).clone(),
                             self.drop)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "FlowCondition":
        """Move (and cast the float tensors)."""
        return FlowCondition(self.tokens.to(device=device, dtype=dtype), self.mask.to(device),
                             self.pooled.to(device=device, dtype=dtype), self.seconds.to(device), self.drop.to(device))

    @staticmethod
    def cat(conditions: list["FlowCondition"]) -> "FlowCondition":
        """Stack along the batch, padding the token axis to the longest (padding masked out)."""
        n = max(c.tokens.shape[1] for c in conditions)
        tokens, masks = [], []
        for c in conditions:
            pad = n - c.tokens.shape[1]
            tokens.append(torch.nn.functional.pad(c.tokens, (0, 0, 0, pad)))
            masks.append(torch.nn.functional.pad(c.mask, (0, pad), value=False))
        return FlowCondition(torch.cat(tokens), torch.cat(masks), torch.cat([c.pooled for c in conditions]),
                             torch.cat([c.seconds for c in conditions]), torch.cat([c.drop for c in conditions]))
