"""ParamSpec: a synth parameter declared as data.

Every renderer parameter has a name (with its unit), a closed physical range,
a scale and a default. The optimiser never sees physical values: it works on an
unconstrained tensor ``u`` and :meth:`ParamSpec.to_physical` maps it smoothly
into range::

    linear:  value = min + (max - min) * sigmoid(u)
    log:     value = exp(log(min) + (log(max) - log(min)) * sigmoid(u))

Both maps are bounded, so no optimiser step can leave the range, and their
derivatives are bounded, so no gradient is infinite. :meth:`from_physical` is
the exact inverse (the logit), used for initialisation and preset loading;
values exactly at a range limit are pulled in by a tiny margin so the logit
stays finite.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch

Scale = Literal["linear", "log"]

# Largest |u| produced by from_physical; sigmoid(±_U_LIMIT) differs from 0/1 by
# about 1e-7, below float32 resolution of a normalised value.
_EDGE = 1e-6
#: units of parameters that set frequencies (:attr:`ParamSpec.is_frequency`)
FREQUENCY_UNITS = ("Hz", "ratio")


@dataclass(frozen=True)
class ParamSpec:
    """Declaration of one (possibly vector-valued) synth parameter.

    Attributes:
        name: identifier with its unit, e.g. ``"f0_hz"``, ``"decay_s"``.
        unit: human-readable unit ("Hz", "s", "ratio", "dB", "" for unitless).
        min: lower end of the closed physical range.
        max: upper end of the closed physical range.
        default: physical value used when no other is given.
        scale: ``"linear"`` or ``"log"`` (log needs ``min > 0``).
        description: one sentence for docs and ``sds-audio info``.
        shape: per-candidate shape, e.g. ``()`` for a scalar, ``(4,)`` for one
            value per operator, ``(4, 4)`` for a matrix. The synth's tensors
            carry a leading batch dimension in front of this shape.
    """

    name: str
    unit: str
    min: float
    max: float
    default: float
    scale: Scale = "linear"
    description: str = ""
    shape: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min) and math.isfinite(self.max)) or self.max <= self.min:
            raise ValueError(f"ParamSpec {self.name}: need finite min < max, got [{self.min}, {self.max}]")
        if self.scale not in ("linear", "log"):
            raise ValueError(f"ParamSpec {self.name}: scale must be 'linear' or 'log', got {self.scale!r}")
        if self.scale == "log" and self.min <= 0:
            raise ValueError(f"ParamSpec {self.name}: log scale needs min > 0")
        if not self.min <= self.default <= self.max:
            raise ValueError(f"ParamSpec {self.name}: default {self.default} outside [{self.min}, {self.max}]")

    @property
    def is_frequency(self) -> bool:
        """Whether the parameter places partials on the frequency axis (unit Hz, or a frequency
        ratio); optimisers give these a smaller step (see ``frequency_lr_scale`` in the tasks)."""
        return self.unit in FREQUENCY_UNITS

    # -- normalised <-> physical -------------------------------------------------
    def normalize(self, value: torch.Tensor) -> torch.Tensor:
        """Physical value -> position in [0, 1] along the (linear or log) range."""
        if self.scale == "log":
            lo, hi = math.log(self.min), math.log(self.max)
            return (torch.log(value) - lo) / (hi - lo)
        return (value - self.min) / (self.max - self.min)

    def denormalize(self, x01: torch.Tensor) -> torch.Tensor:
        """Position in [0, 1] -> physical value."""
        if self.scale == "log":
            lo, hi = math.log(self.min), math.log(self.max)
            return torch.exp(lo + (hi - lo) * x01)
        return self.min + (self.max - self.min) * x01

    def to_physical(self, u: torch.Tensor) -> torch.Tensor:
        """Unconstrained tensor -> physical value inside [min, max] (smooth, bounded gradient)."""
        value = self.denormalize(torch.sigmoid(u))
        # exp/log round-off can step a hair outside the range at the extremes.
        return value.clamp(self.min, self.max) if self.scale == "log" else value

    def from_physical(self, value: torch.Tensor | float) -> torch.Tensor:
        """Exact inverse of :meth:`to_physical` (values at a limit map to a large finite u)."""
        value = torch.as_tensor(value, dtype=torch.get_default_dtype() if not torch.is_tensor(value) else None)
        if not torch.is_floating_point(value):
            value = value.to(torch.get_default_dtype())
        x01 = self.normalize(value.clamp(self.min, self.max)).clamp(_EDGE, 1.0 - _EDGE)
        return torch.logit(x01)

    def contains(self, value: torch.Tensor) -> bool:
        """True when every element is finite and inside [min, max]."""
        value = torch.as_tensor(value)
        return bool(torch.isfinite(value).all() and (value >= self.min).all() and (value <= self.max).all())

    def with_shape(self, shape: tuple[int, ...]) -> "ParamSpec":
        """The same declaration with another per-candidate shape."""
        return ParamSpec(self.name, self.unit, self.min, self.max, self.default, self.scale, self.description, tuple(shape))
