"""Prompt -> synth parameters: the Audio-SDS optimisation loop.

``synthesize`` runs Adam on a synth's unconstrained parameters with the SDS
objective (:mod:`sds_audio.sds`). The synth's batch dimension holds several
random restarts optimised together; at the end the restart with the best
judge score (or, without a judge, the lowest recent SDS loss) is kept.

One step::

    audio  = synth(n_samples)                       # (restarts, C, T)
    result = sds(audio, synth.sample_rate, progress=step / steps)
    result.loss.backward(); adam.step()

A run is seeded (restart initialisation and the objective's ``t`` / noise draws
come from explicit generators), shows a progress bar with the running loss,
checkpoints every ``checkpoint_every`` steps (and on Ctrl-C) into
``checkpoint_dir``, and resumes from there bit-for-bit on the same machine.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from tqdm.auto import tqdm

from ..errors import SDSAudioError
from ..interrupts import StepInterrupts, at_step_boundary
from ..priors.base import Prior
from ..sds import SDSConfig, SDSObjective
from ..synths import Synth
from .checkpoint import load_checkpoint, save_checkpoint
from .population import BestByPrior, PopulationConfig, draw_population, score_population, select_population

CHECKPOINT_NAME = "checkpoint.pt"
#: spread (unconstrained units) of the restarts after the first around a given start (``init="current"``)
INIT_JITTER = 0.25


@dataclass(frozen=True)
class SynthesisConfig:
    """Options of a prompt-to-preset run.

    Attributes:
        steps: Adam updates.
        lr: Adam learning rate on the unconstrained parameters.
        frequency_lr_scale: learning rate of the frequency parameters (unit Hz or a ratio) relative
            to ``lr`` (see :meth:`~sds_audio.synths.base.Synth.parameter_groups`).
        restarts: random initialisations optimised together (the synth's batch).
        duration_s: length of the rendered sound.
        judge_every: score restarts with the judge every this many steps (0 = never).
        checkpoint_every: write a checkpoint every this many steps (0 = only on Ctrl-C).
        seed: seeds the restarts' initialisation and the SDS draws.
        sds: the objective's options (its own ``seed`` is replaced by ``seed``).
        init: ``"random"`` (every restart drawn along the parameter ranges) or ``"current"``
            (every restart starts from the given synth's candidate 0, e.g. a loaded preset; restarts
            after the first are moved by a seeded N(0, ``INIT_JITTER``) in unconstrained units).
        keep_best_every: every this many steps (and at the start and the end) score the restarts with the
            population score (:class:`~sds_audio.tasks.population.BestByPrior`, options from
            ``population``); each restart ends at its best-scored state (0 = at its final state).
        population: with ``init="random"`` and ``population.size > restarts``, the restarts are the
            best of ``population.size`` structured draws scored by the prior
            (:mod:`sds_audio.tasks.population`); ``size=0`` draws the restarts directly.
    """

    steps: int = 150
    lr: float = 0.05
    frequency_lr_scale: float = 1.0
    restarts: int = 4
    duration_s: float = 1.5
    judge_every: int = 25
    checkpoint_every: int = 50
    seed: int = 0
    sds: SDSConfig = field(default_factory=lambda: SDSConfig(denoise_steps=4, guidance_scale=5.0))
    init: str = "random"
    population: PopulationConfig = field(default_factory=lambda: PopulationConfig(size=0))
    keep_best_every: int = 0

    def __post_init__(self) -> None:
        if self.init not in ("random", "current"):
            raise SDSAudioError(f"init must be 'random' or 'current', got {self.init!r}", field="init")
        if int(self.steps) != self.steps or self.steps < 1:
            raise SDSAudioError("steps must be an integer >= 1", field="steps")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise SDSAudioError("lr must be a positive number", field="lr")
        if not (math.isfinite(self.frequency_lr_scale) and self.frequency_lr_scale > 0):
            raise SDSAudioError("frequency_lr_scale must be a positive number", field="frequency_lr_scale")
        if int(self.restarts) != self.restarts or self.restarts < 1:
            raise SDSAudioError("restarts must be an integer >= 1", field="restarts")
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise SDSAudioError("duration_s must be a positive number of seconds", field="duration_s")
        if int(self.keep_best_every) != self.keep_best_every or self.keep_best_every < 0:
            raise SDSAudioError("keep_best_every must be an integer >= 0", field="keep_best_every")
        if 0 < self.population.size < self.restarts:
            raise SDSAudioError(f"the population ({self.population.size}) must hold at least the "
                                f"{self.restarts} restarts", field="population")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SynthesisResult:
    """What a run returns.

    Attributes:
        synth: the synth holding every restart (batch = restarts).
        best_index: the restart that was kept.
        audio: ``(1, C, T)`` render of the kept restart at ``synth.sample_rate``.
        initial_audio: ``(1, C, T)`` render of the same restart before optimisation.
        history: per step: ``loss`` (list per restart), ``t`` (mean), and every
            ``judge_every`` steps ``judge`` (list per restart).
        judge_initial / judge_final: judge scores per restart (empty without a judge).
        seconds: wall time of the optimisation (the population stage included).
        population_scores: the population stage's score of each kept restart (lower = preferred by
            the prior; empty without a population stage).
        population_kept: each restart's index among the population's draws.
        best_steps: with ``keep_best_every``, per restart the step whose state it ends at (empty without).
    """

    synth: Synth
    best_index: int
    audio: torch.Tensor
    initial_audio: torch.Tensor
    history: list[dict[str, Any]]
    judge_initial: list[float]
    judge_final: list[float]
    seconds: float
    population_scores: list[float] = field(default_factory=list)
    population_kept: list[int] = field(default_factory=list)
    best_steps: list[int] = field(default_factory=list)

    @property
    def best_synth(self) -> Synth:
        return self.synth.select(self.best_index)


def _score(judge: Callable[[torch.Tensor, int, str], torch.Tensor] | None, audio: torch.Tensor,
           sample_rate: int, prompt: str) -> list[float]:
    if judge is None:
        return []
    with torch.no_grad():
        return [float(s) for s in judge(audio.detach(), sample_rate, prompt)]


def _save_checkpoint(path: Path, synth: Synth, optimizer: torch.optim.Optimizer, step: int,
                     history: list[dict[str, Any]], judge_initial: list[float], objective: SDSObjective,
                     initial_raw: dict[str, torch.Tensor], population_scores: list[float],
                     population_kept: list[int], tracker: BestByPrior | None = None) -> None:
    state = {
        "step": step,
        "raw": {k: v.detach().cpu() for k, v in synth.raw.items()},
        "initial_raw": initial_raw,
        "optimizer": optimizer.state_dict(),
        "generator": objective.generator.get_state(),
        "history_json": json.dumps(history),
        "judge_initial": judge_initial,
        "synth_config_json": json.dumps(synth.config()),
        "population_scores": population_scores,
        "population_kept": population_kept,
        "best_by_prior": tracker.state_dict() if tracker is not None else {},
    }
    save_checkpoint(path, state)


def population_start(synth: Synth, n_samples: int, prior: Prior, objective: SDSObjective,
                     config: SynthesisConfig, progress: bool = True) -> tuple[Synth, list[float], list[int]]:
    """The population stage: ``config.population.size`` structured draws (seeded by ``config.seed``),
    scored by the prior under the objective's prompt; returns the synth holding the ``restarts`` best
    (best first), their scores and their indices among the draws."""
    generator = torch.Generator().manual_seed(config.seed)
    population = draw_population(synth.to(prior.device), config.population.size, generator)
    cond = objective.conditioning(config.duration_s)
    with tqdm(total=config.population.size, disable=not progress, desc="population", unit="patch",
              dynamic_ncols=True) as bar:
        scores = score_population(population, n_samples, prior, cond, objective.config.guidance_scale,
                                  config.population, objective.emphasis, generator, progress=bar.update)
    kept = select_population(scores, config.restarts)
    return population.gather(kept), [float(scores[i]) for i in kept], kept


def synthesize(synth: Synth, prompt: str, prior: Prior, config: SynthesisConfig | None = None, *,
               judge: Callable[[torch.Tensor, int, str], torch.Tensor] | None = None,
               checkpoint_dir: str | Path | None = None, resume: bool = False, progress: bool = True,
               on_step: Callable[[int, dict[str, Any]], None] | None = None) -> SynthesisResult:
    """Find synth parameters whose sound matches ``prompt`` under ``prior``.

    Args:
        synth: any :class:`~sds_audio.synths.Synth`; its batch is reset to ``config.restarts``
            fresh random initialisations (unless resuming).
        prompt: the text the sound should match.
        prior: the frozen text-to-audio prior.
        config: run options (default :class:`SynthesisConfig`).
        judge: ``judge(audio (B, C, T), sample_rate, prompt) -> (B,)`` scores, higher is
            better (e.g. :func:`sds_audio.judge.judge_score`); picks the kept restart.
        checkpoint_dir: where ``checkpoint.pt`` goes (periodically and on Ctrl-C).
        resume: continue from ``checkpoint_dir/checkpoint.pt``.
        progress: show a progress bar.
        on_step: called after every step with ``(step, info)``: ``info`` is the step's history
            entry plus ``audio``, the step's render of every restart ``(restarts, C, T)`` (detached,
            before the update), and ``synth``, the synth being optimised (read it, do not change it).
            Raising from it stops the run there; a :class:`KeyboardInterrupt` checkpoints as Ctrl-C does.
    """
    config = config or SynthesisConfig()
    if not isinstance(prompt, str) or not prompt.strip():
        raise SDSAudioError("the prompt is empty; describe the sound, e.g. \"kick drum, bass, reverb\"")
    if config.duration_s > prior.max_duration_s:
        raise SDSAudioError(f"duration {config.duration_s:g} s is longer than the prior's maximum "
                            f"{prior.max_duration_s:g} s; pass a shorter --duration-s")
    given = {k: v.detach()[:1].cpu() for k, v in synth.raw.items()}
    if synth.batch_size != config.restarts:
        synth = type(synth)(**synth.config(), batch_size=config.restarts)
    synth = synth.to(prior.device)
    sds_config = dataclasses.replace(config.sds, seed=config.seed)
    objective = SDSObjective(prior, prompt, sds_config, seconds=config.duration_s)
    n_samples = synth.n_samples(config.duration_s)
    ckpt_path = Path(checkpoint_dir) / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if ckpt_path is not None and not resume:
        ckpt_path.parent.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    start, history, judge_initial, population_scores, population_kept, state = 0, [], [], [], [], None
    if resume:
        if ckpt_path is None or not ckpt_path.is_file():
            raise SDSAudioError(f"nothing to resume: {ckpt_path or 'no checkpoint directory given'} does not exist")
        state = load_checkpoint(ckpt_path)
        if "synth_config_json" in state:    # the restarts' settings (e.g. DX7 algorithms the population chose)
            synth = type(synth)(**json.loads(state["synth_config_json"]),
                                batch_size=config.restarts).to(prior.device)
        population_scores = list(state.get("population_scores", []))
        population_kept = [int(i) for i in state.get("population_kept", [])]
    elif config.init == "random" and config.population.size > 0:
        synth, population_scores, population_kept = population_start(synth, n_samples, prior, objective, config,
                                                                     progress)
    optimizer = torch.optim.Adam(synth.parameter_groups(config.lr, config.frequency_lr_scale), lr=config.lr)

    if state is not None:
        with torch.no_grad():
            for name, value in state["raw"].items():
                if name not in synth.raw or synth.raw[name].shape != value.shape:
                    raise SDSAudioError(f"cannot resume from {ckpt_path}: it was made with another synth or "
                                        f"restart count (parameter {name!r})")
                synth.raw[name].copy_(value)
        optimizer.load_state_dict(state["optimizer"])
        objective.generator.set_state(state["generator"])
        start, history = int(state["step"]), json.loads(state["history_json"])
        judge_initial = list(state["judge_initial"])
        initial_raw = state["initial_raw"]
    elif config.init == "current":
        generator = torch.Generator().manual_seed(config.seed)
        with torch.no_grad():
            for name, value in given.items():
                start_raw = value.expand_as(synth.raw[name].cpu()).clone()
                start_raw[1:] += INIT_JITTER * torch.randn(start_raw[1:].shape, generator=generator)
                synth.raw[name].copy_(start_raw)
        initial_raw = {k: v.detach().cpu().clone() for k, v in synth.raw.items()}
        with torch.no_grad():
            judge_initial = _score(judge, synth(n_samples), synth.sample_rate, prompt)
    else:
        if not population_scores:
            synth.randomize_(torch.Generator().manual_seed(config.seed))
        initial_raw = {k: v.detach().cpu().clone() for k, v in synth.raw.items()}
        with torch.no_grad():
            judge_initial = _score(judge, synth(n_samples), synth.sample_rate, prompt)

    tracker = None
    if config.keep_best_every:
        tracker = BestByPrior(prior, objective.conditioning(config.duration_s), objective.config.guidance_scale,
                              config.population, objective.emphasis, config.seed)
        if state is not None:
            tracker.load_state_dict(state.get("best_by_prior", {}))
    bar = tqdm(range(start, config.steps), initial=start, total=config.steps, disable=not progress,
               desc="sds", unit="step", dynamic_ncols=True)
    step = start
    generator_at_step = objective.generator.get_state()
    stop = StepInterrupts()
    try:
        for step in stop.steps(bar):   # a signal takes effect after a whole step
            generator_at_step = objective.generator.get_state()
            audio = synth(n_samples)
            result = objective(audio, synth.sample_rate, progress=step / max(1, config.steps - 1))
            check = tracker is not None and step % config.keep_best_every == 0
            before = {k: v.detach().clone() for k, v in synth.raw.items()} if check else None
            optimizer.zero_grad(set_to_none=True)
            result.loss.backward()
            optimizer.step()
            entry: dict[str, Any] = {"step": step, "loss": result.item_loss.tolist(),
                                     "t": float(result.t.mean())}
            if check:   # the state this step rendered, before its update
                entry["prior_score"] = tracker.offer(before, audio, synth.sample_rate, step).tolist()
            if judge is not None and config.judge_every and (step + 1) % config.judge_every == 0:
                entry["judge"] = _score(judge, audio, synth.sample_rate, prompt)
            history.append(entry)
            bar.set_postfix(loss=f"{float(result.item_loss.mean()):.4f}", t=f"{entry['t']:.2f}")
            if on_step is not None:
                on_step(step, dict(entry, audio=audio.detach(), synth=synth))
            if ckpt_path is not None and config.checkpoint_every and (step + 1) % config.checkpoint_every == 0:
                _save_checkpoint(ckpt_path, synth, optimizer, step + 1, history, judge_initial, objective,
                                 initial_raw, population_scores, population_kept, tracker)
    except KeyboardInterrupt as exc:
        if ckpt_path is not None:
            done = history[-1]["step"] + 1 if history else start
            if not at_step_boundary(exc) and done == step:   # stopped inside a step: undo its random draws
                objective.generator.set_state(generator_at_step)
            _save_checkpoint(ckpt_path, synth, optimizer, done, history, judge_initial, objective, initial_raw,
                             population_scores, population_kept, tracker)
        raise
    finally:
        stop.restore()
        bar.close()
    seconds = time.perf_counter() - t0

    best_steps: list[int] = []
    with torch.no_grad():
        final = synth(n_samples)
        if tracker is not None:     # each restart back to its best state by the prior's score
            tracker.offer(dict(synth.raw), final, synth.sample_rate, config.steps)
            for name, value in tracker.best_raw.items():
                synth.raw[name].copy_(value.to(synth.raw[name].device))
            best_steps = [int(s) for s in tracker.best_step]
            final = synth(n_samples)
        judge_final = _score(judge, final, synth.sample_rate, prompt)
        if judge_final:
            best = int(torch.tensor(judge_final).argmax())
        else:  # lowest SDS loss averaged over the last 10 % of steps
            tail = [h["loss"] for h in history[-max(1, len(history) // 10):]]
            best = int(torch.tensor(tail).mean(0).argmin())
        initial = type(synth)(**synth.config(), batch_size=config.restarts).to(prior.device)
        for name, value in initial_raw.items():
            initial.raw[name].copy_(value)
        initial_audio = initial(n_samples)[best:best + 1]
    return SynthesisResult(synth=synth, best_index=best, audio=final[best:best + 1].detach(),
                           initial_audio=initial_audio.detach(), history=history, judge_initial=judge_initial,
                           judge_final=judge_final, seconds=seconds, population_scores=population_scores,
                           population_kept=population_kept, best_steps=best_steps)
