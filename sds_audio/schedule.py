"""Noise-level (``t``) schedules for SDS.

``t`` follows the prior convention (:mod:`sds_audio.priors.base`): a float in
``(0, 1]``, 0 = clean, 1 = the prior's largest noise level. A schedule turns the
run's progress (0 at the first update, 1 at the last) into ``t`` values:

* ``"uniform"``: every draw is uniform on ``[t_min, t_max]``, whatever the progress
  (the DreamFusion default).
* ``"linear"``: deterministic anneal from ``t_max`` at progress 0 to ``t_min`` at
  progress 1: coarse structure first, detail last (DreamTime-style).
* ``"linear_jitter"``: the anneal with uniform jitter of ``+- jitter`` around it,
  clipped to ``[t_min, t_max]``; keeps some spread of noise levels per update.

Random draws come from an explicit CPU ``torch.Generator`` so a seed fixes a run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import SDSAudioError

SCHEDULES = ("uniform", "linear", "linear_jitter")


@dataclass(frozen=True)
class TSchedule:
    """A ``t`` schedule. See the module docstring for the kinds.

    Attributes:
        kind: ``"uniform"``, ``"linear"`` or ``"linear_jitter"``.
        t_min: smallest noise level, in (0, 1].
        t_max: largest noise level, in [t_min, 1].
        jitter: half-width of the jitter for ``"linear_jitter"``.
    """

    kind: str = "uniform"
    t_min: float = 0.02
    t_max: float = 0.98
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in SCHEDULES:
            raise SDSAudioError(f"unknown t schedule {self.kind!r}; choose one of {', '.join(SCHEDULES)}",
                                field="t_schedule")
        if not (0.0 < self.t_min <= self.t_max <= 1.0):
            raise SDSAudioError(f"need 0 < t_min <= t_max <= 1, got t_min={self.t_min}, t_max={self.t_max}",
                                field="t_min")
        if self.jitter < 0:
            raise SDSAudioError("jitter must be >= 0", field="jitter")

    def center(self, progress: float) -> float:
        """The annealed level at ``progress`` in [0, 1] (``t_max`` -> ``t_min``)."""
        p = min(max(float(progress), 0.0), 1.0)
        return self.t_max - (self.t_max - self.t_min) * p

    def sample(self, n: int, progress: float = 0.0, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` noise levels, float32 ``(n,)`` on the CPU."""
        if self.kind == "linear":
            return torch.full((n,), self.center(progress), dtype=torch.float32)
        u = torch.rand(n, generator=generator, dtype=torch.float32)
        if self.kind == "uniform":
            return self.t_min + (self.t_max - self.t_min) * u
        lo = max(self.t_min, self.center(progress) - self.jitter)
        hi = min(self.t_max, self.center(progress) + self.jitter)
        return lo + (hi - lo) * u
