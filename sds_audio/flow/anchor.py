"""``PromptAnchor``: steer a new wording's pooled text embedding onto a sound the prior knows.

A prompt in words no training caption used ("someone playing a cembalo loudly")
has a MiniLM pooled embedding that sits between concepts: the attribute words
("loud", "short", "with reverb") weigh as much as the name of the sound, so the
nearest training caption is of the right concept for only ~77 % of the corpus's
held-out paraphrases. A linear classifier over the same pooled embeddings,
fitted on the training captions alone, reads the concept off ~83 % of them: it
learns which directions name sounds and which describe them.

The anchor does that and no more: it predicts the concept of the prompt and
picks that concept's training caption nearest the prompt (so the attributes it
shares with the prompt come along). The embedded prior then conditions the
flow model's pooled (global) input on the predicted concept's *centroid* (the
unit mean of its training captions' pooled embeddings: the name they share
survives the mean, the attributes that vary average out) and cross-attends to
the nearest caption's tokens followed by the prompt's own, so every word the
user wrote is still read, through the tokens. A prompt the corpus used
verbatim picks itself as the nearest caption when the classifier reads its
concept right (it does for all but a few training captions).

Measured on the shipped model (``benchmarks/embedded_stack.py --sections flow``,
judge top-1 of generations from canonical prompts / held-out paraphrases):
prompt alone 75.0 / 50.1 %, anchor caption's pooled embedding with the
prompt's tokens 79.1 / 58.9 %, the anchor caption instead of the prompt
80.4 / 59.9 %, pooled embedding and tokens of the caption followed by the
prompt's tokens (``EmbeddedPrior(anchor="caption")``) 79.7 / 60.5 %, the
concept's centroid as the pooled input with the same tokens (the default,
``anchor="centroid"``) 79.0 / 66.7 %.

The anchor's tensors travel in the flow model's ``.safetensors`` file (keys
``anchor.*``), fitted by :func:`fit_anchor` at the end of
:func:`~sds_audio.flow.train.train_flow`.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import SDSAudioError


class PromptAnchor(torch.nn.Module):
    """Concept classifier + training-caption bank over pooled text embeddings.

    Buffers: ``weight (text_dim, K)`` and ``bias (K,)`` of the linear classifier
    (K concepts), ``bank (M, text_dim)`` the training captions' unit pooled
    embeddings, ``label (M,)`` their concept indices. ``captions`` holds the M
    caption strings (saved in the flow file's metadata).
    """

    def __init__(self, text_dim: int, n_concepts: int, captions: Sequence[str]):
        super().__init__()
        self.captions = [str(c) for c in captions]
        if not self.captions or not all(c.strip() for c in self.captions):
            raise SDSAudioError("a prompt anchor needs its captions, none of them empty")
        n_captions = len(self.captions)
        self.register_buffer("weight", torch.zeros(text_dim, n_concepts))
        self.register_buffer("bias", torch.zeros(n_concepts))
        self.register_buffer("bank", torch.zeros(n_captions, text_dim))
        self.register_buffer("label", torch.zeros(n_captions, dtype=torch.long))

    @classmethod
    def shapes_from_state(cls, state: dict[str, torch.Tensor], captions: Sequence[str],
                          prefix: str = "anchor.") -> "PromptAnchor":
        """An empty anchor shaped for the ``prefix``-ed tensors of ``state`` and ``captions`` (for loading)."""
        try:
            text_dim, n_concepts = state[prefix + "weight"].shape
            n_captions = state[prefix + "bank"].shape[0]
        except (KeyError, ValueError) as exc:
            raise SDSAudioError(f"incomplete prompt anchor tensors ({exc})") from exc
        if len(captions) != n_captions:
            raise SDSAudioError(f"the prompt anchor has {n_captions} caption embeddings but {len(captions)} captions")
        return cls(int(text_dim), int(n_concepts), captions)

    def concept(self, pooled: torch.Tensor) -> torch.Tensor:
        """Predicted concept index per row of ``pooled (B, text_dim)``."""
        return (pooled.float() @ self.weight.float() + self.bias.float()).argmax(-1)

    def concept_probabilities(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, text_dim)`` -> ``(B, K)``: the classifier's softmax over the concepts (how sure the reading is)."""
        return torch.softmax(pooled.float() @ self.weight.float() + self.bias.float(), dim=-1)

    def nearest(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, text_dim)`` -> index of each row's anchor caption: the predicted concept's nearest one."""
        x = pooled.float()
        concept = self.concept(x)
        sims = x @ self.bank.float().T                                   # (B, M) cosine: both unit length
        sims = torch.where(self.label[None] == concept[:, None], sims, torch.full_like(sims, -3.0))
        return sims.argmax(-1)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, text_dim)`` -> the pooled embedding of each row's anchor caption (same dtype and device)."""
        return self.bank[self.nearest(pooled)].to(pooled)

    def centroids(self) -> torch.Tensor:
        """``(K, text_dim)``: each concept's unit mean of its training captions' pooled embeddings.

        What the concept's captions share (its name) survives the mean; the
        attribute words, which vary across them, average out. Computed from the
        bank (nothing extra is stored); a concept without captions gets zeros.
        """
        k = self.weight.shape[1]
        sums = torch.zeros(k, self.bank.shape[1], dtype=torch.float32, device=self.bank.device)
        sums.index_add_(0, self.label, self.bank.float())
        return torch.nn.functional.normalize(sums, dim=-1)

    def concept_embedding(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, text_dim)`` -> the :meth:`centroids` row of each row's predicted concept (same dtype and device)."""
        return self.centroids()[self.concept(pooled)].to(pooled)


def fit_anchor(pooled: torch.Tensor, concepts: Sequence[str], captions: Sequence[str], steps: int = 500,
               lr: float = 0.1) -> PromptAnchor:
    """Fit a :class:`PromptAnchor` on training captions' pooled embeddings and their concept names.

    Full-batch Adam on the cross-entropy of a linear classifier from zero
    weights (deterministic; a second on two cores for ~5,000 captions).

    Args:
        pooled: ``(M, text_dim)`` unit pooled embeddings of the distinct training captions.
        concepts: the concept of each caption (``M`` names).
        captions: the ``M`` caption strings (kept with the anchor: the prior reads their tokens).
    """
    if pooled.dim() != 2 or not len(concepts) == len(captions) == pooled.shape[0] or pooled.shape[0] == 0:
        raise SDSAudioError(f"fit_anchor needs one concept and one caption per pooled row, got "
                            f"{tuple(pooled.shape)}, {len(concepts)} concepts and {len(captions)} captions")
    names = sorted(set(concepts))
    if len(names) < 2:
        raise SDSAudioError("fit_anchor needs captions of at least two concepts")
    x = torch.nn.functional.normalize(pooled.detach().float().cpu(), dim=-1)
    label = torch.tensor([names.index(c) for c in concepts])
    weight = torch.zeros(x.shape[1], len(names), requires_grad=True)
    bias = torch.zeros(len(names), requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(x @ weight + bias, label)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    anchor = PromptAnchor(x.shape[1], len(names), captions)
    anchor.weight.copy_(weight.detach())
    anchor.bias.copy_(bias.detach())
    anchor.bank.copy_(x)
    anchor.label.copy_(label)
    return anchor


__all__ = ["PromptAnchor", "fit_anchor"]
