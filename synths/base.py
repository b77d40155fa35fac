"""Synth: the base class every differentiable renderer derives from.

A synth is an ``nn.Module`` that

* declares its parameters as :class:`~sds_audio.synths.params.ParamSpec` data
  (``param_specs``),
* holds one unconstrained ``nn.Parameter`` per spec with a leading batch
  dimension (``raw[name]`` has shape ``(batch_size, *spec.shape)``), so one
  module renders many candidate patches at once,
* exposes ``controls()``: the physical values (units as in the spec names),
* renders audio with ``render(controls, n_samples) -> (batch, channels, samples)``
  by calling pure functions from ``dsp.py``.

Settings that are not optimised (operator count, mode count, noise seed) are
constructor arguments, returned by :meth:`Synth.config` so that
``type(synth)(**synth.config())`` rebuilds an identical module. A user's own
synth is any module with ``controls()`` and ``render()`` of this shape; deriving
from this class adds presets, random restarts and candidate selection for free.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Mapping, Sequence

import torch
from torch import nn

from .params import ParamSpec


class Synth(nn.Module):
    """Base class: parameters as ParamSpecs, a batch of candidates, ``render``.

    Args:
        param_specs: the declarations, in a fixed order.
        batch_size: number of candidate patches rendered at once.
        sample_rate: output sample rate in Hz.
        channels: output channel count (1 mono, 2 stereo).
    """

    #: Name used in preset files ("fm", "impact", ...); set by subclasses.
    synth_type: ClassVar[str] = ""

    def __init__(self, param_specs: Sequence[ParamSpec], *, batch_size: int = 1,
                 sample_rate: int = 44100, channels: int = 2):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels}")
        if sample_rate < 1000:
            raise ValueError(f"sample_rate must be >= 1000 Hz, got {sample_rate}")
        self.param_specs: dict[str, ParamSpec] = {s.name: s for s in param_specs}
        if len(self.param_specs) != len(param_specs):
            raise ValueError("duplicate parameter names in param_specs")
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.raw = nn.ParameterDict({
            name: nn.Parameter(spec.from_physical(torch.full((batch_size, *spec.shape), float(spec.default))))
            for name, spec in self.param_specs.items()
        })

    # -- what subclasses provide ----------------------------------------------------
    def render(self, controls: Mapping[str, torch.Tensor], n_samples: int) -> torch.Tensor:
        """Render ``(batch, channels, n_samples)`` audio from physical controls."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments (everything but the parameters)."""
        return {"sample_rate": self.sample_rate, "channels": self.channels}

    # -- parameters -----------------------------------------------------------------
    @property
    def batch_size(self) -> int:
        return next(iter(self.raw.values())).shape[0]

    def controls(self) -> dict[str, torch.Tensor]:
        """Physical values, ``name -> (batch, *shape)``, differentiable w.r.t. ``raw``."""
        return {name: spec.to_physical(self.raw[name]) for name, spec in self.param_specs.items()}

    @torch.no_grad()
    def set_controls(self, controls: Mapping[str, torch.Tensor | float | Sequence[float]]) -> "Synth":
        """Set some parameters from physical values (broadcast over the batch).

        Raises:
            KeyError: unknown parameter name.
            ValueError: wrong shape, non-finite value or value out of range.
        """
        for name, value in controls.items():
            if name not in self.param_specs:
                raise KeyError(f"{type(self).__name__} has no parameter {name!r}; "
                               f"known: {', '.join(self.param_specs)}")
            spec = self.param_specs[name]
            target = self.raw[name]
            value = torch.as_tensor(value, dtype=target.dtype, device=target.device)
            if not spec.contains(value):
                raise ValueError(f"{name}: values must be finite and inside [{spec.min}, {spec.max}] {spec.unit}")
            try:
                value = value.expand(target.shape)
            except RuntimeError:
                raise ValueError(f"{name}: shape {tuple(value.shape)} does not fit {tuple(target.shape[1:])}") from None
            target.copy_(spec.from_physical(value))
        return self

    @torch.no_grad()
    def randomize_(self, generator: torch.Generator | None = None, margin: float = 0.02) -> "Synth":
        """Draw every parameter uniformly along its (linear or log) range.

        ``margin`` keeps draws away from the range ends, where the sigmoid map is
        flat and gradients are small.
        """
        for name, spec in self.param_specs.items():
            raw = self.raw[name]
            x01 = torch.rand(raw.shape, generator=generator, dtype=raw.dtype, device="cpu")
            raw.copy_(torch.logit(margin + (1 - 2 * margin) * x01).to(raw.device))
        return self

    def unconstrained_parameters(self) -> list[nn.Parameter]:
        """The tensors an optimiser should update."""
        return list(self.raw.values())

    def parameter_groups(self, lr: float, frequency_lr_scale: float = 1.0,
                         frozen: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Optimiser parameter groups: the frequency parameters (:attr:`ParamSpec.is_frequency`)
        at ``lr * frequency_lr_scale``, the rest at ``lr``; names in ``frozen`` left out.

        Each group also carries ``"lr_scale"`` (its share of ``lr``) for learning-rate schedules.
        """
        unknown = [k for k in frozen if k not in self.param_specs]
        if unknown:
            raise ValueError(f"unknown parameters {unknown}; this synth has {', '.join(self.param_specs)}")
        free = [k for k in self.param_specs if k not in frozen]
        groups = []
        for scale, names in ((1.0, [k for k in free if not self.param_specs[k].is_frequency]),
                             (float(frequency_lr_scale), [k for k in free if self.param_specs[k].is_frequency])):
            if names:
                groups.append({"params": [self.raw[k] for k in names], "lr": lr * scale, "lr_scale": scale})
        return groups

    # -- convenience ------------------------------------------------------------------
    def n_samples(self, duration_s: float) -> int:
        """Sample count for a duration at this synth's rate."""
        if not (duration_s > 0 and math.isfinite(duration_s)):
            raise ValueError(f"duration_s must be a positive number, got {duration_s}")
        return max(1, int(round(duration_s * self.sample_rate)))

    def forward(self, n_samples: int) -> torch.Tensor:
        return self.render(self.controls(), n_samples)

    #: whether :meth:`reseed_toward_` moves anything (sound matching then re-seeds and slows
    #: the frequency parameters down, see :class:`sds_audio.tasks.match.MatchConfig`)
    can_reseed: ClassVar[bool] = False

    @torch.no_grad()
    def reseed_toward_(self, target_spectrum: torch.Tensor, spectra: torch.Tensor, hz_per_bin: float,
                       fraction: float) -> dict[str, torch.Tensor]:
        """Optional move for sound matching (:func:`sds_audio.tasks.match.match`): put components
        that explain nothing where the target has energy the render lacks.

        Args:
            target_spectrum: ``(bins,)`` time-averaged magnitude spectrum of the target, bin ``i`` at
                ``i * hz_per_bin`` Hz.
            spectra: ``(batch, bins)`` the same for each candidate's current render.
            fraction: share of the synth's re-seedable components to move per candidate.

        Returns:
            ``{parameter name: bool mask shaped like raw[name]}`` of the entries that changed (the
            caller restarts its optimiser state there). The base class moves nothing: ``{}``.
        """
        return {}

    @torch.no_grad()
    def propose_(self, generator: torch.Generator | None = None) -> "Synth":
        """Draw candidates for a population search (:mod:`sds_audio.tasks.population`).

        The base class draws like :meth:`randomize_`; a synth with discrete structure (operator
        ratios, which operators sound) overrides this to draw that structure as patches use it.
        """
        return self.randomize_(generator)

    def _settings_for(self, indices: Sequence[int]) -> dict[str, Any]:
        """Constructor settings of a synth holding the candidates ``indices`` (per-candidate
        settings, such as the DX7 voice's algorithm, override this)."""
        return self.config()

    @torch.no_grad()
    def gather(self, indices: Sequence[int]) -> "Synth":
        """A copy holding candidates ``indices`` in that order (batch ``len(indices)``)."""
        index = [int(i) for i in indices]
        if not index or any(not 0 <= i < self.batch_size for i in index):
            raise ValueError(f"indices must be a non-empty list of candidates 0..{self.batch_size - 1}, got {index}")
        out = type(self)(**self._settings_for(index), batch_size=len(index))
        out.to(next(self.parameters()).device)
        for name in self.param_specs:
            out.raw[name].copy_(self.raw[name][index])
        return out

    def select(self, index: int) -> "Synth":
        """A batch-1 copy holding candidate ``index`` (for saving the best restart)."""
        return self.gather([index])
