"""The commands' work, callable from Python: prompt -> preset directory.

``prompt_to_preset(synth_type, prompt, out_dir, options)`` is what
``sds-audio fm`` / ``sds-audio impact`` run: load the prior and the judge, build
the synth at the prior's sample rate and channel count, run
:func:`~sds_audio.tasks.synthesize.synthesize`, and write the run directory
(see :mod:`sds_audio.run_dir`): ``sound.wav`` and ``initial.wav`` (24-bit),
``preset.json`` with provenance, ``report.png``, ``run.json``.
The separation command's work lives beside it in ``separate_file``, and ``sds-audio match``'s
(recording -> preset, no prior) in ``match_file``.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from .errors import SDSAudioError
from .run_dir import RunDirectory
from .validation import check_input_audio, check_prior_duration, check_prompt, check_prompts, resolve_device

@dataclass(frozen=True)
class JobOptions:
    """Options shared by the prompt-to-preset and separation commands.

    Attributes:
        prior: prior name or directory (``sds_audio.priors.registry.load_prior``).
        steps: optimisation steps.
        seed: seeds everything random in the run.
        device: torch device (default: CUDA if available, else CPU).
        guidance_scale: classifier-free guidance of the prior.
        negative_prompt: text the sound should move away from.
        duration_s: length of the rendered sound (synthesis).
        restarts: random initialisations optimised together (synthesis).
        population: structured draws the prior scores before SDS, of which the ``restarts`` best are
            kept (synthesis; :mod:`sds_audio.tasks.population`); 0: no population stage.
        keep_best_every: end each restart at its best state by the prior's population score, checked
            every this many steps (synthesis; 0: at its final state).
        contrast: the SDS objective's ``contrast`` (:class:`~sds_audio.sds.SDSConfig`).

    ``steps``, ``restarts``, ``population``, ``keep_best_every`` and ``contrast`` left None take the
    synth's defaults (:data:`SYNTH_DEFAULTS`, :meth:`for_synth`); a separation run's ``steps`` default is 200.
        lr: Adam learning rate.
        denoise_steps: ``k`` of the decoder-SDS denoising chain.
        judge: use the shipped judge to pick the restart and score the run.
        codec_precision: the embedded prior's codec precision (``auto``, ``float32``,
            ``bfloat16``; see :class:`~sds_audio.priors.embedded.EmbeddedPrior`).
        progress: show progress bars.
    """

    prior: str = "embedded"
    steps: int | None = None
    seed: int = 0
    device: str | None = None
    guidance_scale: float = 5.0
    negative_prompt: str | None = None
    duration_s: float = 1.5
    restarts: int | None = None
    population: int | None = None
    keep_best_every: int | None = None
    contrast: float | None = None
    lr: float = 0.05
    denoise_steps: int = 4
    judge: bool = True
    codec_precision: str = "auto"
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def for_synth(self, synth_type: str) -> "JobOptions":
        """A copy with every option left None set to ``synth_type``'s default (:data:`SYNTH_DEFAULTS`)."""
        defaults = dict(SYNTH_DEFAULTS.get(synth_type, SYNTH_DEFAULTS["impact"]))
        if self.restarts is not None and defaults["population"]:       # a default population holds them all
            defaults["population"] = max(defaults["population"], int(self.restarts))
        return dataclasses.replace(self, **{k: v for k, v in defaults.items() if getattr(self, k) is None})


#: the prompt-to-preset defaults per synth (chosen on the validation prompts of benchmarks/quality.py).
#: FM-like synths: a population stage over their discrete structure (ratios, carriers, DX7 algorithm),
#: its two best draws as restarts, each ending at its best state by the prior's score; the impact
#: model's SDS already moves its modes (re-seeding), so it starts from four random draws.
SYNTH_DEFAULTS: dict[str, dict[str, Any]] = {
    "fm": {"steps": 120, "restarts": 2, "population": 32, "keep_best_every": 20, "contrast": 0.0},
    "dx7": {"steps": 120, "restarts": 2, "population": 32, "keep_best_every": 20, "contrast": 0.0},
    "impact": {"steps": 150, "restarts": 4, "population": 0, "keep_best_every": 0, "contrast": 0.0},
}


def _device(name: str | None) -> torch.device:
    return resolve_device(name)


SYNTH_TYPES = ("fm", "impact", "dx7")


def check_synth_type(synth_type: str) -> None:
    """SDSAudioError unless ``synth_type`` is one of :data:`SYNTH_TYPES`."""
    if synth_type not in SYNTH_TYPES:
        raise SDSAudioError(f"unknown synth type {synth_type!r}; choose {' or '.join(SYNTH_TYPES)}")


def build_synth(synth_type: str, sample_rate: int, channels: int, seed: int = 0):
    """A fresh synth of a preset type, rendering at ``sample_rate`` / ``channels``."""
    from .synths import FMSynth, ImpactSynth

    check_synth_type(synth_type)
    if synth_type == "fm":
        return FMSynth(sample_rate=sample_rate, channels=channels)
    if synth_type == "dx7":     # restart i tries the i-th algorithm of a seeded order
        from .synths.dx7 import DX7Synth, restart_algorithms

        return DX7Synth(algorithm=restart_algorithms(seed), sample_rate=sample_rate, channels=channels)
    return ImpactSynth(sample_rate=sample_rate, channels=channels, seed=seed % 2 ** 31)


def load_judge_scorer(enabled: bool, device: torch.device) -> tuple[Callable | None, str]:
    """``(judge(audio, sample_rate, prompt) -> (B,), description)``; ``(None, reason)`` without one."""
    if not enabled:
        return None, "disabled"
    from .judge import DEFAULT_JUDGE_PATH, judge_score, load_judge

    if not DEFAULT_JUDGE_PATH.is_file():
        return None, f"missing ({DEFAULT_JUDGE_PATH})"
    model = load_judge(DEFAULT_JUDGE_PATH, device=device)

    def score(audio: torch.Tensor, sample_rate: int, prompt: str) -> torch.Tensor:
        return judge_score(audio, prompt, model, sample_rate=sample_rate)

    return score, str(DEFAULT_JUDGE_PATH.name)


def _load_models(options: JobOptions, device: torch.device) -> tuple[Any, Callable | None, dict[str, Any], float]:
    """Load the prior and the judge; returns ``(prior, judge, run.json fields, seconds taken)``."""
    from .priors.registry import load_prior

    t_load = time.perf_counter()
    prior = load_prior(options.prior, device=device, codec_precision=options.codec_precision)
    judge, judge_desc = load_judge_scorer(options.judge, device)
    autocast = getattr(prior, "codec_autocast", None)
    fields = {"prior": {"name": options.prior, "class": type(prior).__name__,
                        "sample_rate": int(prior.sample_rate), "channels": int(prior.channels),
                        "codec_autocast": None if autocast is None else str(autocast).removeprefix("torch.")},
              "judge": judge_desc, "device": str(device)}
    return prior, judge, fields, time.perf_counter() - t_load


def read_prompts(prior: Any, prompts: list[str]) -> list[dict[str, Any]] | None:
    """What the prior understood of each prompt (run.json's ``prompt_reading``); warns on a weak reading.

    ``None`` for priors that read free text (no ``read_prompt``, e.g. Stable Audio Open).
    """
    import warnings

    read = getattr(prior, "read_prompt", None)
    readings = [read(p) for p in prompts] if read is not None else []
    if not readings or any(r is None for r in readings):
        return None
    for reading in readings:
        if reading.is_weak:
            warnings.warn(reading.warning(), stacklevel=2)
    return [{"prompt": r.prompt, "summary": r.summary(), **r.to_dict()} for r in readings]


def _check_resumable(run: RunDirectory, checkpoint_name: str) -> None:
    """Before loading anything: the run's checkpoint exists and reads (never unpickling code)."""
    from .tasks.checkpoint import load_checkpoint

    path = run.file(checkpoint_name)
    if not path.is_file():
        raise SDSAudioError(f"nothing to resume in {run.path}: the run stopped before its first checkpoint; "
                            "start it again with --overwrite")
    load_checkpoint(path)


def _curves(history: list[dict[str, Any]], best: int, judge_initial: list[float],
            judge_final: list[float]) -> dict[str, dict[str, tuple[list, list]]]:
    steps = [h["step"] + 1 for h in history]
    loss_best = [h["loss"][best] for h in history]
    loss_mean = [sum(h["loss"]) / len(h["loss"]) for h in history]
    judged = [h for h in history if "judge" in h]
    curves = {"SDS loss": {"kept restart": (steps, loss_best), "mean of restarts": (steps, loss_mean)},
              "t (noise level)": {"t": (steps, [h["t"] for h in history])}}
    if judge_initial and judge_final:
        points = [(0, judge_initial[best])] + [(h["step"] + 1, h["judge"][best]) for h in judged]
        if not judged or judged[-1]["step"] + 1 != len(history):
            points.append((len(history), judge_final[best]))
        curves["judge score"] = {"kept restart": ([p[0] for p in points], [p[1] for p in points])}
    return curves


def prompt_to_preset(synth_type: str, prompt: str | None, out_dir: str | Path, options: JobOptions | None = None,
                     *, overwrite: bool = False, resume: bool = False,
                     on_step: Callable[[int, dict[str, Any]], None] | None = None,
                     init: str | None = None) -> dict[str, Any]:
    """Run prompt -> preset and write the run directory. Returns the final ``run.json`` record.

    ``init`` names a preset of the same synth to start every restart from instead of random
    draws (``PATH.json``, or for ``dx7`` a DX7 voice ``PATH.syx`` / ``PATH.syx:N``). A ``dx7`` run
    also writes ``voice.syx``, the kept restart as a DX7 single-voice dump named from the prompt.

    With ``resume=True`` the prompt, synth and options come from ``out_dir/run.json``
    (of ``options`` only ``progress`` is used) and the run continues from
    ``out_dir/checkpoint.pt``. ``on_step`` is :func:`~sds_audio.tasks.synthesize.synthesize`'s
    (progress; raising :class:`KeyboardInterrupt` from it stops the run as Ctrl-C does).
    """
    from .audio_io import save_audio
    from .presets import save_preset
    from .report import write_report
    from .sds import SDSConfig
    from .tasks.population import PopulationConfig
    from .tasks.synthesize import CHECKPOINT_NAME, SynthesisConfig, synthesize

    if resume:
        run = RunDirectory(out_dir, resume=True)
        record = run.read()
        if record.get("task") != "synthesize":
            raise SDSAudioError(f"{run.path} holds a {record.get('task')!r} run, not a prompt-to-preset run")
        synth_type, prompt = record["synth"], record["prompt"]
        init = record.get("init")
        earlier = {"population": 0, "keep_best_every": 0, "contrast": 0.0}    # runs from before these options
        options = JobOptions(**{**earlier, **record["options"], "progress": options.progress if options else True})
        _check_resumable(run, CHECKPOINT_NAME)
    else:
        options = (options or JobOptions()).for_synth(synth_type)
        check_prompt(prompt)
        record = {"task": "synthesize", "synth": synth_type, "prompt": prompt, "options": options.to_dict()}
        if init is not None:
            record["init"] = str(init)
        run = RunDirectory(out_dir, overwrite=overwrite)   # checks only: created once the models have loaded
    # validate everything before creating the output directory or loading a model
    config = SynthesisConfig(steps=options.steps, lr=options.lr, restarts=options.restarts,
                             duration_s=options.duration_s, seed=options.seed,
                             population=PopulationConfig(size=options.population),
                             keep_best_every=options.keep_best_every,
                             sds=SDSConfig(denoise_steps=options.denoise_steps, guidance_scale=options.guidance_scale,
                                           negative_prompt=options.negative_prompt, contrast=options.contrast),
                             init="random" if init is None else "current")
    check_synth_type(synth_type)
    start = _init_preset(init, synth_type)
    device = _device(options.device)

    prior, judge, loaded, load_s = _load_models(options, device)
    check_prior_duration(options.duration_s, prior)
    synth = build_synth(synth_type, int(prior.sample_rate), int(prior.channels), options.seed)
    if start is not None:       # the given preset's synth, at the prior's rate and channel count
        synth = type(start.synth)(**{**start.synth.config(), "sample_rate": int(prior.sample_rate),
                                     "channels": int(prior.channels)})
        synth.set_controls(start.controls)
    record.update(status="running", synthesis_config=config.to_dict(), **loaded,
                  prompt_reading=read_prompts(prior, [prompt]))
    run.write(record)
    with run.guard(record):     # interrupted -> "interrupted" (resumable), an error -> "failed"
        result = synthesize(synth, prompt, prior, config, judge=judge, checkpoint_dir=run.path, resume=resume,
                            progress=options.progress, on_step=on_step)
        best = result.best_index
        sr = int(result.synth.sample_rate)
        provenance = {"prompt": prompt, "prior": options.prior, "seed": options.seed, "steps": options.steps,
                      "restart": best, "judge_initial": result.judge_initial[best] if result.judge_initial else None,
                      "judge_final": result.judge_final[best] if result.judge_final else None}
        save_audio(run.file("sound.wav"), result.audio, sr)
        save_audio(run.file("initial.wav"), result.initial_audio, sr)
        save_preset(run.file("preset.json"), result.synth, index=best, duration_s=options.duration_s,
                    provenance=provenance)
        outputs = ["sound.wav", "initial.wav", "preset.json", "report.png"]
        if synth_type == "dx7":
            from .exports.syx import write_vced

            write_vced(run.file("voice.syx"), result.synth.to_voice(best, name=prompt))
            outputs.append("voice.syx")
        write_report(run.file("report.png"), [("before (random init)", result.initial_audio[0]),
                                              ("after", result.audio[0])], sr,
                     _curves(result.history, best, result.judge_initial, result.judge_final),
                     title=f"{synth_type}: {prompt!r}")
        chooser = (f"the shipped judge's score ({record.get('judge')})" if result.judge_final
                   else "the lowest SDS loss over the last 10 % of steps")
        if result.population_scores:
            record["population"] = {"size": config.population.size, "kept": result.population_kept,
                                    "kept_scores": result.population_scores}
        record.update(status="done", best_restart=best, best_restart_chosen_by=chooser,
                      judge_initial=result.judge_initial, judge_final=result.judge_final,
                      timings_s={"load": round(load_s, 3), "optimise": round(result.seconds, 3)},
                      outputs=outputs)
        run.write(record)
    run.file(CHECKPOINT_NAME).unlink(missing_ok=True)
    return record


def _init_preset(init: str | None, synth_type: str):
    """The preset a run starts from (``None``: random starts); SDSAudioError if it is of another synth."""
    if init is None:
        return None
    from .presets import load_preset_spec

    preset = load_preset_spec(init)
    if preset.synth.synth_type != synth_type:
        raise SDSAudioError(f"--init {init} is a {preset.synth.synth_type!r} preset; a {synth_type!r} run starts "
                            f"from a {synth_type!r} preset")
    return preset


def _separation_curves(history: list[dict[str, Any]], prompts: list[str]) -> dict[str, dict[str, tuple[list, list]]]:
    steps = list(range(1, len(history) + 1))
    if history and "mask_change" in history[0]:     # the mask method: the sources sum to the mixture exactly
        curves = {"mask change (KL from the split, nats)": {"KL": (steps, [h["mask_change"] for h in history])}}
    else:
        curves = {"reconstruction loss (1 = silence)": {"L_rec": (steps, [h["loss_rec"] for h in history])}}
    if history and history[0]["loss_sds"][0] is not None:
        curves["SDS loss per source"] = {p[:24]: (steps, [h["loss_sds"][k] for h in history])
                                         for k, p in enumerate(prompts)}
    return curves


def separate_file(mixture_path: str | Path | None, prompts: list[str] | None, out_dir: str | Path,
                  options: JobOptions | None = None, *, gamma: float = 0.3, init: str = "prior_mask",
                  residual_decoding: bool = True, mask_refinements: int = 0, lr_schedule: str = "constant",
                  sds_target: str = "source", method: str = "mask", mask_lr: float | None = None,
                  overwrite: bool = False, resume: bool = False,
                  on_step: Callable[[int, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Separate an audio file into one source per prompt; write the run directory.

    Writes ``{k:02d}_{prompt}.wav`` per source (24-bit, the input's rate and channels),
    ``report.png`` (mixture and source spectrograms, loss curves) and ``run.json``.
    ``init``, ``residual_decoding``, ``mask_refinements``, ``lr_schedule``, ``sds_target``, ``method`` and
    ``mask_lr`` (None: the library's) are :class:`~sds_audio.tasks.separate.SeparationConfig`'s (``init``:
    ``"prior_mask"``, ``"mixture"`` or ``"split"``; ``method``: ``"mask"`` or ``"latent"``). With ``resume=True`` the file, prompts and options come from ``out_dir/run.json``.
    ``on_step`` is :func:`~sds_audio.tasks.separate.separate`'s (as in :func:`prompt_to_preset`).
    """
    from .audio_io import load_audio
    from .report import write_report
    from .sds import SDSConfig
    from .tasks.separate import CHECKPOINT_NAME as SEPARATION_CHECKPOINT
    from .tasks.separate import OPTIONS_ADDED_LATER, SeparationConfig, check_mixture, separate
    from .tasks.separate import check_prompts as check_prompt_list

    choices = {"init": init, "residual_decoding": residual_decoding, "mask_refinements": mask_refinements,
               "lr_schedule": lr_schedule, "sds_target": sds_target, "method": method,
               "mask_lr": SeparationConfig().mask_lr if mask_lr is None else mask_lr}
    if resume:
        run = RunDirectory(out_dir, resume=True)
        record = run.read()
        if record.get("task") != "separate":
            raise SDSAudioError(f"{run.path} holds a {record.get('task')!r} run, not a separation run")
        mixture_path, prompts, gamma = record["mixture"], record["prompts"], record["gamma"]
        older = {"init": "mixture", "residual_decoding": False, "mask_lr": SeparationConfig().mask_lr,
                 **OPTIONS_ADDED_LATER}                                   # runs before the options
        choices = {name: record.get(name, older[name]) for name in choices}
        options = JobOptions(**{**record["options"], "progress": options.progress if options else True})
        _check_resumable(run, SEPARATION_CHECKPOINT)
    else:
        options = options or JobOptions(steps=SeparationConfig().steps if method == "mask" else 200, lr=0.25)
        prompts = check_prompts(prompts)                  # two or more, each a real prompt
        check_input_audio(mixture_path, "separate", "mixture")   # header: length policy, at most stereo
        record = {"task": "separate", "mixture": str(mixture_path), "prompts": list(prompts or []), "gamma": gamma,
                  **choices, "options": options.to_dict()}
        run = RunDirectory(out_dir, overwrite=overwrite)   # checks only: created once the models have loaded
    config = SeparationConfig(steps=options.steps, lr=options.lr, gamma=gamma, **choices, seed=options.seed,
                              sds=SDSConfig(denoise_steps=options.denoise_steps,
                                            guidance_scale=options.guidance_scale,
                                            negative_prompt=options.negative_prompt))
    prompts = check_prompt_list(prompts)
    mixture, sample_rate = load_audio(mixture_path)      # unreadable / empty / silent / NaN files fail here
    check_mixture(mixture, sample_rate)                  # clipped, too short
    device = _device(options.device)

    prior, judge, loaded, load_s = _load_models(options, device)
    record.update(status="running", separation_config=config.to_dict(), **loaded,
                  prompt_reading=read_prompts(prior, list(prompts)),
                  input={"sample_rate": sample_rate, "channels": int(mixture.shape[1]),
                         "duration_s": mixture.shape[-1] / sample_rate})
    run.write(record)
    with run.guard(record):     # interrupted -> "interrupted" (resumable), an error -> "failed"
        result = separate(mixture.to(device), prompts, prior, config, sample_rate=sample_rate, judge=judge,
                          checkpoint_dir=run.path, resume=resume, progress=options.progress, on_step=on_step)
        paths = result.save(run.path)
        write_report(run.file("report.png"), [("mixture", result.mixture)] +
                     [(p[:28], s) for p, s in zip(result.prompts, result.sources)], result.sample_rate,
                     _separation_curves(result.history, result.prompts),
                     title=f"separation: {', '.join(prompts)}")
        record.update(status="done", judge_sources=result.judge_scores, judge_mixture=result.judge_mixture,
                      windows=[list(w) for w in result.windows],
                      timings_s={"load": round(load_s, 3), "optimise": round(result.seconds, 3)},
                      outputs=[p.name for p in paths] + ["report.png"])
        run.write(record)
    run.file(SEPARATION_CHECKPOINT).unlink(missing_ok=True)
    return record


def match_file(target_path: str | Path, synth_type: str, out_dir: str | Path, config: Any = None, *,
               device: str | None = None, overwrite: bool = False, progress: bool = True) -> dict[str, Any]:
    """Fit a synth to a recording (:func:`~sds_audio.tasks.match.match`); write the run directory.

    The synth renders at the recording's rate and channel count. Writes ``sound.wav`` (the kept
    restart, 24-bit), ``preset.json`` (provenance: the target file and the distances),
    ``report.png`` (target and match spectrograms, distance curves) and ``run.json``.
    ``config`` is a :class:`~sds_audio.tasks.match.MatchConfig` (default: its defaults).
    """
    from .audio_io import load_audio, save_audio
    from .presets import save_preset
    from .report import write_report
    from .tasks.match import MatchConfig, match

    config = config or MatchConfig()
    check_synth_type(synth_type)
    dev = _device(device)
    check_input_audio(target_path, "match", "target")          # header: length policy, at most stereo
    run = RunDirectory(out_dir, overwrite=overwrite, resumable=False)   # checks only
    target, rate = load_audio(target_path)                      # (1, C, T); refuses unreadable / silent files
    channels = int(target.shape[1])
    synth = build_synth(synth_type, rate, channels, config.seed).to(dev)
    record: dict[str, Any] = {"task": "match", "synth": synth_type, "target": str(target_path),
                              "sample_rate": rate, "channels": channels, "match_config": dataclasses.asdict(config),
                              "device": str(dev), "status": "running"}
    run.write(record)
    with run.guard(record, keep_interrupted=False):    # a match cannot resume: an interrupted one is removed
        result = match(synth, target.to(dev), config, progress=progress)
        best = result.best_index
        duration_s = target.shape[-1] / rate
        with torch.no_grad():
            audio = result.synth(target.shape[-1])[best:best + 1].cpu()
        save_audio(run.file("sound.wav"), audio, rate)
        save_preset(run.file("preset.json"), result.synth, index=best, duration_s=duration_s,
                    provenance={"task": "match", "target": Path(target_path).name, "seed": config.seed,
                                "steps": config.steps, "restart": best,
                                "distance_initial": result.distance_initial[best],
                                "distance_final": result.distance_final[best]})
        steps = list(range(1, len(result.history) + 1))
        curves = {"MR-STFT distance": {"kept restart": (steps, [h[best] for h in result.history]),
                                       "mean of restarts": (steps, [sum(h) / len(h) for h in result.history])}}
        write_report(run.file("report.png"), [("target", target[0]), ("match", audio[0])], rate, curves,
                     title=f"{synth_type} matched to {Path(target_path).name}")
        record.update(status="done", best_restart=best, distance_initial=result.distance_initial,
                      distance_final=result.distance_final, reduction=result.reduction, reseeded=result.reseeded,
                      timings_s={"optimise": round(result.seconds, 3)},
                      outputs=["sound.wav", "preset.json", "report.png"])
        run.write(record)
    return record
