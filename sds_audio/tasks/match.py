"""Audio -> synth parameters: sound matching (inverse synthesis) on a spectral distance.

``match`` fits a synth to a target recording by Adam on the synth's unconstrained
parameters, with the multi-resolution STFT distance
(:class:`~sds_audio.spectral.MultiResolutionSTFTDistance`) as the loss. The synth's
batch holds several restarts optimised together (each restart's gradient is its own);
the one with the lowest final distance is kept.

One step::

    audio = synth(n_samples)                               # (restarts, C, T)
    distance(audio, target).sum().backward(); adam.step()  # lr cosine-annealed lr -> lr_end

Magnitude-spectrum losses move a partial only when it already overlaps one of the
target's (the loss is a comb in frequency), so components that start far from
every target partial fade out instead of travelling. Synths that re-seed
(``can_reseed``, :meth:`~sds_audio.synths.base.Synth.reseed_toward_`; ImpactSynth:
its modes) get ``reseed_events`` re-seedings spread over the first 60 % of the
steps: the components that sit where the target is quiet jump onto the largest
peaks of the spectrum the target has and the render lacks, and Adam's moments
restart for the entries that moved; their frequency parameters then take 10x
smaller steps, to refine rather than jump.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..audio_io import match_channels, resample
from ..errors import SDSAudioError
from ..spectral import MultiResolutionSTFTDistance
from ..synths import Synth

INITS = ("random", "current")


@dataclass(frozen=True)
class MatchConfig:
    """Options of a sound-matching run.

    Attributes:
        steps: Adam updates.
        restarts: candidates optimised together (the synth's batch is rebuilt to this size
            when ``init="random"``; with ``init="current"`` the synth's own batch is used).
        lr, lr_end: Adam learning rate, cosine-annealed from ``lr`` to ``lr_end``.
        frequency_lr_scale: the learning rate of the frequency parameters (unit Hz or a ratio)
            relative to the others; None (default): 0.1 when the synth re-seeds
            (``synth.can_reseed`` and ``reseed_events > 0``), else 1. Adam moves every
            unconstrained value by about ``lr`` per step whatever its gradient; on a log-frequency
            range that is a jump of ~10 % of the frequency. With re-seeding to place partials,
            such jumps only throw a partial off the target's partial it was refining (ImpactSynth:
            median reduction 85 % against 78 %, benchmarks/inverse_synthesis.py); without it they
            are the only search across the spectrum there is (FMSynth: 34 % at 0.1 against 47 % at
            1, 4 and 10 seeds).
        reseed_events: residual-driven re-seedings in the first 60 % of the steps (0 = none;
            synths without re-seedable components ignore it).
        reseed_fraction: share of each candidate's re-seedable components moved per event.
        init: ``"random"`` (every parameter uniform along its range, seeded by ``seed``) or
            ``"current"`` (start from the synth's parameters as they are).
        frozen: parameter names kept at their starting values.
        seed: seeds the random restarts.
    """

    steps: int = 300
    restarts: int = 8
    lr: float = 0.1
    lr_end: float = 0.002
    frequency_lr_scale: float | None = None
    reseed_events: int = 3
    reseed_fraction: float = 0.5
    init: str = "random"
    frozen: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "restarts"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or value < 1:
                raise SDSAudioError(f"{name} must be an integer >= 1, got {value!r}", field=name)
        if not (math.isfinite(self.lr) and self.lr > 0 and math.isfinite(self.lr_end) and 0 < self.lr_end <= self.lr):
            raise SDSAudioError(f"need 0 < lr_end <= lr, got lr {self.lr}, lr_end {self.lr_end}", field="lr")
        if self.frequency_lr_scale is not None and not (math.isfinite(self.frequency_lr_scale)
                                                        and self.frequency_lr_scale > 0):
            raise SDSAudioError(f"frequency_lr_scale must be a positive number, got {self.frequency_lr_scale}",
                                field="frequency_lr_scale")
        if int(self.reseed_events) != self.reseed_events or self.reseed_events < 0:
            raise SDSAudioError(f"reseed_events must be an integer >= 0, got {self.reseed_events!r}",
                                field="reseed_events")
        if not 0.0 < self.reseed_fraction <= 1.0:
            raise SDSAudioError(f"reseed_fraction must lie in (0, 1], got {self.reseed_fraction}",
                                field="reseed_fraction")
        if self.init not in INITS:
            raise SDSAudioError(f"init must be one of {', '.join(INITS)}, got {self.init!r}", field="init")

    def frequency_lr_scale_for(self, synth: Synth) -> float:
        """``frequency_lr_scale``, or its default for ``synth`` when None (see the attribute)."""
        if self.frequency_lr_scale is not None:
            return float(self.frequency_lr_scale)
        return 0.1 if synth.can_reseed and self.reseed_events > 0 else 1.0

    def reseed_steps(self) -> list[int]:
        """The steps before which the re-seedings happen."""
        n = int(self.reseed_events)
        return sorted({int(round(0.6 * self.steps * (i + 1) / (n + 1))) for i in range(n)})


@dataclass
class MatchResult:
    """What :func:`match` returns.

    Attributes:
        synth: the synth holding every restart.
        best_index: the restart with the lowest final distance.
        distance_initial / distance_final: multi-resolution STFT distance of each restart
            before and after.
        history: per step, the distance of each restart (before that step's update).
        reseeded: per re-seeding event, ``(step, components moved over all restarts)``.
        seconds: wall time of the optimisation.
    """

    synth: Synth
    best_index: int
    distance_initial: list[float]
    distance_final: list[float]
    history: list[list[float]]
    reseeded: list[tuple[int, int]]
    seconds: float

    @property
    def best_synth(self) -> Synth:
        return self.synth.select(self.best_index)

    @property
    def reduction(self) -> float:
        """``1 - final / initial`` distance of the kept restart."""
        i = self.best_index
        return 1.0 - self.distance_final[i] / self.distance_initial[i]


def cosine_factor(step: int, config: MatchConfig) -> float:
    """Learning-rate factor at ``step``: a half cosine from 1 to ``lr_end / lr`` over the steps."""
    end = config.lr_end / config.lr
    return end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * min(step, config.steps) / config.steps))


def _prepare_target(target: torch.Tensor, synth: Synth, target_sample_rate: int | None) -> torch.Tensor:
    if not torch.is_tensor(target) or target.dim() not in (2, 3) or (target.dim() == 3 and target.shape[0] != 1):
        shape = tuple(target.shape) if torch.is_tensor(target) else type(target).__name__
        raise SDSAudioError(f"target must be audio of shape (channels, samples) or (1, channels, samples), "
                            f"got {shape}")
    x = target.reshape(1, *target.shape[-2:]).float()
    if x.shape[-1] < 2 or not torch.isfinite(x).all():
        raise SDSAudioError("target audio is empty or holds NaN / infinite samples")
    if float(x.abs().max()) == 0.0:
        raise SDSAudioError("target audio is silent: there is nothing to match")
    if target_sample_rate is not None and int(target_sample_rate) != synth.sample_rate:
        x = resample(x, int(target_sample_rate), synth.sample_rate)
    return match_channels(x, synth.channels)


def _restart_moments(optimizer: torch.optim.Optimizer, param: torch.Tensor, mask: torch.Tensor) -> None:
    """Adam's moments for the masked entries: first moment 0, second the median over the whole tensor."""
    state = optimizer.state.get(param)
    if not state or not bool(mask.any()):
        return
    state["exp_avg"][mask] = 0.0
    state["exp_avg_sq"][mask] = state["exp_avg_sq"].median()


def match(synth: Synth, target: torch.Tensor, config: MatchConfig = MatchConfig(), *,
          target_sample_rate: int | None = None, distance: MultiResolutionSTFTDistance | None = None,
          progress: bool = True) -> MatchResult:
    """Fit ``synth`` to ``target`` (see the module docstring).

    Args:
        synth: any :class:`~sds_audio.synths.base.Synth`; with ``init="random"`` a new synth of the
            same type and config holds ``config.restarts`` random restarts (``synth`` is left as is).
        target: ``(channels, samples)`` or ``(1, channels, samples)``; its length sets the render's.
        target_sample_rate: the target's rate when it differs from the synth's (resampled).
        distance: the loss (default ``MultiResolutionSTFTDistance()``).

    Raises:
        SDSAudioError: bad target or config, an unknown frozen parameter, or a non-finite loss.
    """
    x_target = _prepare_target(target, synth, target_sample_rate)
    unknown = [k for k in config.frozen if k not in synth.param_specs]
    if unknown:
        raise SDSAudioError(f"frozen names unknown parameters {unknown}; this synth has "
                            f"{', '.join(synth.param_specs)}", field="frozen")
    device = next(synth.parameters()).device
    if config.init == "random":
        synth = type(synth)(**synth.config(), batch_size=int(config.restarts))
        synth.randomize_(torch.Generator().manual_seed(int(config.seed))).to(device)
    x_target = x_target.to(device)
    distance = (distance or MultiResolutionSTFTDistance()).to(device)
    n_samples = x_target.shape[-1]
    optimizer = torch.optim.Adam(synth.parameter_groups(config.lr, config.frequency_lr_scale_for(synth),
                                                        config.frozen), lr=config.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: cosine_factor(step, config))
    reseed_at = set(config.reseed_steps()) if synth.can_reseed else set()
    finest = max(distance.stft.n_ffts)
    finest_index = list(distance.stft.n_ffts).index(finest)
    with torch.no_grad():
        target_spectrum = distance.stft(x_target)[finest_index].mean(dim=(1, 3))[0]       # (bins,)
    history: list[list[float]] = []
    reseeded: list[tuple[int, int]] = []
    t0 = time.perf_counter()
    for step in tqdm(range(int(config.steps)), desc="match", disable=not progress, leave=False):
        if step in reseed_at:
            with torch.no_grad():
                spectra = distance.stft(synth(n_samples))[finest_index].mean(dim=(1, 3))   # (B, bins)
                held = {k: synth.raw[k].clone() for k in config.frozen}
                masks = synth.reseed_toward_(target_spectrum, spectra, synth.sample_rate / finest,
                                             config.reseed_fraction)
                for k, value in held.items():                 # frozen parameters stay put
                    synth.raw[k].copy_(value)
                masks = {k: m for k, m in masks.items() if k not in held}
            for name, mask in masks.items():
                _restart_moments(optimizer, synth.raw[name], mask)
            if masks:
                reseeded.append((step, max(int(m.sum()) for m in masks.values())))
        optimizer.zero_grad(set_to_none=True)
        loss = distance(synth(n_samples), x_target)                                       # (B,)
        if not torch.isfinite(loss).all():
            raise SDSAudioError(f"the spectral distance is not finite at step {step}; lower lr")
        history.append([float(v) for v in loss.detach()])
        loss.sum().backward()
        optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        final = [float(v) for v in distance(synth(n_samples), x_target)]
    best = min(range(len(final)), key=final.__getitem__)
    return MatchResult(synth=synth, best_index=best, distance_initial=history[0] if history else final,
                       distance_final=final, history=history, reseeded=reseeded, seconds=seconds)

