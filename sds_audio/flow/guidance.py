"""Classifier-free guidance (Ho & Salimans 2022) for the flow model.

``v = v_uncond + scale * (v_cond - v_uncond)``: ``scale = 1`` is the plain
conditional model, ``0`` the unconditional one, larger values extrapolate
toward the text. Both branches run in one batched forward pass (the
conditional rows first); the unconditional branch is the model's learned null
text, or a negative prompt when one is given (then ``drop`` is False on those
rows and guidance pushes away from the negative text).
"""

from __future__ import annotations

import torch

from .condition import FlowCondition
from .dit import FlowModel
from .samplers import VelocityFn


def cfg_combine(v_cond: torch.Tensor, v_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """``v_uncond + scale * (v_cond - v_uncond)``."""
    return v_uncond + scale * (v_cond - v_uncond)


def guided_velocity(model: FlowModel, cond: FlowCondition, uncond: FlowCondition | None,
                    scale: float) -> VelocityFn:
    """A ``v(x, s)`` callable applying classifier-free guidance with one batched forward per call.

    Args:
        model: the flow model.
        cond: conditional branch (batch ``B`` or 1).
        uncond: unconditional / negative branch (batch ``B`` or 1); None means
            the model's null text with ``cond``'s durations.
        scale: guidance scale; at exactly 1 only the conditional branch runs, at exactly 0 only the
            unconditional one.
    """
    if uncond is None:
        uncond = FlowCondition(cond.tokens[:, :1], cond.mask[:, :1], cond.pooled, cond.seconds,
                               torch.ones_like(cond.drop))

    def velocity(x: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        c = cond.expand_to(b)
        if scale == 1.0:
            return model(x, s, c)
        if scale == 0.0:
            return model(x, s, uncond.expand_to(b))
        both = FlowCondition.cat([c, uncond.expand_to(b)])
        v = model(torch.cat([x, x]), torch.cat([s, s]), both)
        v_cond, v_uncond = v.chunk(2)
        return cfg_combine(v_cond, v_uncond, scale)

    return velocity
