"""One validation step for a command's options and inputs, run before anything is loaded or created.

:func:`validate_args` is what :func:`sds_audio.cli.main` calls between parsing
and running a command. It checks every number (finite, whole where it counts
something, inside its range), every prompt (not empty, at most
:data:`MAX_PROMPT_CHARS`), every input path (exists, is a file or a directory
as expected, audio that libsndfile reads, by its header only), every output
path (a supported extension, a folder that exists and is writable, not taken
unless ``--overwrite``) and the length and channel policy of each task
(:data:`INPUT_LENGTHS`), so that a bad input costs no model load and leaves no
file or directory behind. What can only be known once a model is loaded (the
prior's own longest clip) is checked right after loading, before the output
directory is created (:func:`check_prior_duration`).

The job functions of :mod:`sds_audio.jobs` apply the same input checks
(:func:`check_prompt`, :func:`check_input_audio`), so the Python API holds the
same policy. Commands defined in other modules validate their own options with
the helpers here; :func:`validate_args` passes over commands it does not know.

Length policy (seconds of input audio, checked from the file header):

=================  ======  =======  ==================================================
task               min     max      why the maximum
=================  ======  =======  ==================================================
match              0.01    30       one synth patch models one sound; every step renders
                                    the whole length for every restart
separate           0.05    300      processed in windows with a progress bar; the time
                                    grows with the length (steps per window)
codec roundtrip    0.01    120      the codec encodes the whole file in one pass
=================  ======  =======  ==================================================

Inputs with more than :data:`MAX_INPUT_CHANNELS` channels are refused by every
command (the synths and priors are mono or stereo); downmix them first.
"""

from __future__ import annotations

import argparse
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .audio_io import AudioInfo, output_format, probe_audio
from .errors import SDSAudioError
from .paths import check_creatable, check_input_dir, check_input_file, check_output_dir, check_output_file

#: longest prompt (characters); the text encoders read far fewer tokens than this
MAX_PROMPT_CHARS = 1000
MAX_STEPS = 100_000
MAX_RESTARTS = 64
MAX_POPULATION = 1024
MAX_SEED = 2 ** 63 - 1
#: longest sound a prompt command makes before the prior is known (its own maximum is checked after loading)
MAX_SYNTH_DURATION_S = 60.0
MAX_GENERATE_S = 60.0
MAX_GUIDANCE = 100.0
MAX_DENOISE_STEPS = 200
MAX_INPUT_CHANNELS = 2


@dataclass(frozen=True)
class LengthPolicy:
    """Accepted input length of a task, in seconds, and what to do about a longer input."""

    min_s: float
    max_s: float
    advice: str


INPUT_LENGTHS: dict[str, LengthPolicy] = {
    "match": LengthPolicy(0.01, 30.0, "a preset models one sound: cut the recording to the sound to imitate"),
    "separate": LengthPolicy(0.05, 300.0, "separate it in parts of at most 5 minutes"),
    "codec roundtrip": LengthPolicy(0.01, 120.0, "the codec encodes a file in one pass: cut it into parts"),
}


# ----------------------------------------------------------------------------- single values
def check_prompt(prompt: Any, what: str = "prompt", example: str = "kick drum, bass, reverb") -> str:
    """The prompt if it is a non-empty string of at most :data:`MAX_PROMPT_CHARS` characters."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise SDSAudioError(f"the {what} is empty; describe the sound, e.g. \"{example}\"")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise SDSAudioError(f"the {what} is {len(prompt)} characters long; keep it under {MAX_PROMPT_CHARS} "
                            "(the text encoder reads only the first few dozen words)")
    if "\x00" in prompt:
        raise SDSAudioError(f"the {what} holds a NUL character; give plain text")
    return prompt


def check_int(value: Any, option: str, lo: int, hi: int) -> int:
    """``value`` if it is a whole number in ``[lo, hi]``."""
    if value is None or isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise SDSAudioError(f"{option} must be a whole number from {lo} to {hi}, got {value!r}")
    return value


def check_float(value: Any, option: str, lo: float, hi: float, *, lo_open: bool = False) -> float:
    """``value`` if it is a finite number in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
          and (lo < value if lo_open else lo <= value) and value <= hi)
    if not ok:
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
        raise SDSAudioError(f"{option} must be a finite number in {interval}, got {value!r}")
    return float(value)


def check_seed(value: Any, option: str = "--seed") -> int:
    return check_int(value, option, 0, MAX_SEED)


def resolve_device(name: str | None):
    """The torch device for ``--device`` (default: CUDA if available, else CPU); SDSAudioError if unusable."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise SDSAudioError(f"unknown device {name!r} (use cpu, cuda, cuda:1, mps)") from exc
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SDSAudioError(f"device {name!r} was asked for but CUDA is not available; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise SDSAudioError(f"device {name!r} does not exist: this machine has {torch.cuda.device_count()} "
                                "CUDA device(s)")
    elif device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise SDSAudioError(f"device {name!r} was asked for but MPS is not available; use --device cpu")
    elif device.type != "cpu":
        raise SDSAudioError(f"device {name!r} is not supported (use cpu, cuda, cuda:1, mps)")
    return device


def check_prior_name(name: Any) -> str:
    """A registry name, a directory that holds a prior, or a hub id ``owner/name``; no model is loaded."""
    from .priors.registry import PRIORS, _is_hub_id

    text = str(name)
    if text in PRIORS:
        return text
    path = Path(text).expanduser()
    if path.is_dir():
        markers = ("model_config.json", "transformer", "model_index.json", "flow.safetensors")
        if not any((path / m).exists() for m in markers):
            raise SDSAudioError(f"{path} holds no prior: an embedded prior directory has codec.safetensors and "
                                "flow.safetensors (from `sds-audio train`), a Stable Audio one vae/, transformer/, ...")
        return text
    if path.exists():
        raise SDSAudioError(f"--prior {path} is a file; give a prior name or a directory")
    if _is_hub_id(text):
        return text
    raise SDSAudioError(f"unknown prior {text!r}: not a known name ({', '.join(PRIORS)}), an existing directory, "
                        "or a hub id 'owner/name'")


def check_input_audio(path: Any, task: str, what: str = "audio file") -> AudioInfo:
    """Header checks of an input recording: readable audio, the task's length policy, at most stereo."""
    if path is None or str(path) == "":
        raise SDSAudioError(f"give the {what}")
    info = probe_audio(path, what)
    policy = INPUT_LENGTHS.get(task)
    if policy is not None:
        if info.duration_s < policy.min_s:
            raise SDSAudioError(f"{what} {path} is {info.duration_s * 1000:.1f} ms long; {task} needs at least "
                                f"{policy.min_s * 1000:g} ms")
        if info.duration_s > policy.max_s:
            raise SDSAudioError(f"{what} {path} is {info.duration_s:.1f} s long; {task} takes at most "
                                f"{policy.max_s:g} s: {policy.advice}")
    if info.channels > MAX_INPUT_CHANNELS:
        raise SDSAudioError(f"{what} {path} has {info.channels} channels; give a mono or stereo file (downmix it "
                            "first, e.g. `ffmpeg -i IN -ac 2 OUT.wav`)")
    return info


def check_prior_duration(duration_s: float, prior: Any, option: str = "--duration-s") -> None:
    """After loading: SDSAudioError if ``duration_s`` is longer than the prior's longest clip."""
    longest = float(getattr(prior, "max_duration_s", math.inf))
    if duration_s > longest:
        raise SDSAudioError(f"duration {duration_s:g} s is longer than the prior's maximum {longest:g} s; "
                            f"pass a shorter {option}")


def check_audio_output(path: Any, overwrite: bool) -> Path:
    """An output audio file: supported extension (:func:`~sds_audio.audio_io.output_format`), writable, free."""
    if Path(path).is_dir():
        raise SDSAudioError(f"output file {path} is a directory; give a file name, e.g. {Path(path) / 'sound.wav'}")
    output_format(path)
    return check_output_file(path, overwrite=overwrite)


# ----------------------------------------------------------------------------- commands
def _render(args: argparse.Namespace) -> None:
    from .presets import MAX_DURATION_S

    check_input_file(args.preset, "preset file")
    if getattr(args, "voice", None) is not None:
        check_int(args.voice, "--voice", 1, 32)
    check_audio_output(args.output, args.overwrite)
    if args.duration_s is not None:
        check_float(args.duration_s, "--duration-s", 0.0, MAX_DURATION_S, lo_open=True)
    if args.f0_hz is not None:
        check_float(args.f0_hz, "--f0-hz", 0.0, 100_000.0, lo_open=True)


def _job_options(args: argparse.Namespace, *, synthesis: bool) -> None:
    check_prior_name(args.prior)
    if args.steps is not None:
        check_int(args.steps, "--steps", 1 if synthesis else 0, MAX_STEPS)
    check_seed(args.seed)
    check_float(args.cfg, "--cfg", 0.0, MAX_GUIDANCE)
    if args.negative is not None:
        check_prompt(args.negative, "negative prompt", "muffled, noisy")
    check_int(args.denoise_steps, "--denoise-steps", 1, MAX_DENOISE_STEPS)
    check_float(args.lr, "--lr", 0.0, 10.0, lo_open=True)
    if synthesis:
        from .jobs import JobOptions

        check_float(args.duration_s, "--duration-s", 0.0, MAX_SYNTH_DURATION_S, lo_open=True)
        if args.restarts is not None:
            check_int(args.restarts, "--restarts", 1, MAX_RESTARTS)
        resolved = JobOptions(restarts=args.restarts, population=getattr(args, "population", None)).for_synth(
            getattr(args, "command", ""))                          # the synth's defaults where not given
        restarts, population = resolved.restarts, resolved.population
        check_int(population, "--population", 0, MAX_POPULATION)
        if 0 < population < restarts:
            raise SDSAudioError(f"--population ({population}) must be 0 or at least --restarts ({restarts})")
        if getattr(args, "keep_best_every", None) is not None:
            check_int(args.keep_best_every, "--keep-best-every", 0, MAX_STEPS)
    resolve_device(args.device)


def _resume_dir(path: str) -> None:
    from .run_dir import RunDirectory

    RunDirectory(path, resume=True)


def _prompt_to_preset(args: argparse.Namespace) -> None:
    if args.resume is not None:
        if args.prompt is not None:
            raise SDSAudioError("--resume continues the run recorded in DIR/run.json; do not give a prompt with it")
        _resume_dir(args.resume)
        return
    if args.prompt is None or args.output is None:
        raise SDSAudioError(f"give a prompt and -o DIR (or --resume DIR), e.g. "
                            f"sds-audio {args.command} \"kick drum, bass, reverb\" -o kick/")
    check_prompt(args.prompt)
    _job_options(args, synthesis=True)
    _new_run_dir(args.output, args.overwrite, resumable=True)


def _new_run_dir(path: str, overwrite: bool, resumable: bool) -> None:
    from .run_dir import RunDirectory

    RunDirectory(path, overwrite=overwrite, resumable=resumable)


def _separate(args: argparse.Namespace) -> None:
    if args.resume is not None:
        if args.mixture is not None or args.prompt:
            raise SDSAudioError("--resume continues the run recorded in DIR/run.json; give no mixture or prompts")
        _resume_dir(args.resume)
        return
    if args.mixture is None or args.output is None:
        raise SDSAudioError("give a mixture, one -p PROMPT per source and -o DIR (or --resume DIR)")
    check_prompts(args.prompt)
    check_input_audio(args.mixture, "separate", "mixture")
    check_float(args.gamma, "--gamma", 0.0, 100.0)
    check_int(args.mask_refinements, "--mask-refinements", 0, 16)
    _job_options(args, synthesis=False)
    _new_run_dir(args.output, args.overwrite, resumable=True)


def check_prompts(prompts: Any) -> list[str]:
    """Two or more prompts, one per source (with one, the separated "source" would be the mixture itself)."""
    if not prompts:
        raise SDSAudioError("give one prompt per source with -p, e.g. -p \"kick drum\" -p \"rain\"")
    prompts = [check_prompt(p, f"prompt {i + 1}", "dog bark") for i, p in enumerate(prompts)]
    if len(prompts) < 2:
        raise SDSAudioError("separation needs at least two prompts, one per source (with one, the output would be "
                            "the mixture itself); add another -p, e.g. -p \"background noise\"")
    return prompts


def _match(args: argparse.Namespace) -> None:
    check_input_audio(args.target, "match", "target")
    check_int(args.steps, "--steps", 1, MAX_STEPS)
    check_int(args.restarts, "--restarts", 1, MAX_RESTARTS)
    check_seed(args.seed)
    resolve_device(args.device)
    _new_run_dir(args.output, args.overwrite, resumable=False)


def _codec_roundtrip(args: argparse.Namespace) -> None:
    check_input_audio(args.input, "codec roundtrip", "input")
    if args.weights is not None:
        check_input_file(args.weights, "codec weights", option="--weights")
    check_audio_output(args.output, args.overwrite)


def _generate(args: argparse.Namespace) -> None:
    from .flow.samplers import SWAY_MAX, SWAY_MIN

    check_prompt(args.prompt)
    if args.negative is not None:
        check_prompt(args.negative, "negative prompt", "muffled, noisy")
    if args.seconds is not None:
        check_float(args.seconds, "--seconds", 0.0, MAX_GENERATE_S, lo_open=True)
    check_int(args.steps, "--steps", 1, 1000)
    check_float(args.cfg, "--cfg", 0.0, MAX_GUIDANCE)
    check_seed(args.seed)
    if args.sway:   # 0 (or unset) means no sway
        check_float(args.sway, "--sway", SWAY_MIN, SWAY_MAX)
    if args.assets is not None:
        check_input_dir(args.assets, "assets directory", option="--assets")
    resolve_device(args.device)
    check_audio_output(args.output, args.overwrite)


def _corpus_build(args: argparse.Namespace) -> None:
    check_seed(args.seed)
    if args.n_per_concept is not None:
        check_int(args.n_per_concept, "--n-per-concept", 1, 100_000)
    check_int(args.workers, "--workers", 0, 2)
    check_output_dir(args.out_dir)


def _train(args: argparse.Namespace) -> None:
    if args.model == "tts":   # checked by sds_audio.commands.tts.run_train_tts
        return
    if args.corpus is None:
        raise SDSAudioError(f"train {args.model} needs --corpus DIR (build one with `sds-audio corpus build`)")
    corpus = check_input_dir(args.corpus, "corpus directory", option="--corpus")
    if not (corpus / "manifest.jsonl").is_file():
        raise SDSAudioError(f"{corpus} is not a corpus (no manifest.jsonl); build one with `sds-audio corpus build`")
    if args.steps is not None:
        check_int(args.steps, "--steps", 1, 10_000_000)
    if args.batch_size is not None:
        check_int(args.batch_size, "--batch-size", 1, 4096)
    if args.lr is not None:
        check_float(args.lr, "--lr", 0.0, 1.0, lo_open=True)
    check_seed(args.seed)
    if args.threads is not None:
        check_int(args.threads, "--threads", 1, os.cpu_count() or 1024)
    if args.model == "flow":
        if not args.codec:
            raise SDSAudioError("train flow needs --codec PATH (the codec .safetensors the prior will ship with)")
        check_input_file(args.codec, "codec weights", option="--codec")
    if args.init_from is not None:
        check_input_file(args.init_from, "weights to start from", option="--init-from")
    if args.caption_augment is not None:
        check_float(args.caption_augment, "--caption-augment", 0.0, 1.0)
    if args.text_noise is not None:
        check_float(args.text_noise, "--text-noise", 0.0, 10.0)
    if args.decoder_only and args.init_from is None:
        raise SDSAudioError("--decoder-only fine-tunes a trained codec: give it with --init-from WEIGHTS")
    out = check_output_dir(args.out, what="run directory")
    if out.resolve() == corpus.resolve():
        raise SDSAudioError("--out must not be the corpus directory; give a directory of its own")


def _dx7(args: argparse.Namespace) -> None:
    if args.init is not None:
        if args.resume is not None:
            raise SDSAudioError("--resume continues from the run's own start; do not give --init with it")
        from .jobs import _init_preset

        _init_preset(args.init, "dx7")
    _prompt_to_preset(args)


VALIDATORS: dict[str, Callable[[argparse.Namespace], None]] = {
    "render": _render, "fm": _prompt_to_preset, "impact": _prompt_to_preset, "dx7": _dx7, "separate": _separate,
    "match": _match, "codec roundtrip": _codec_roundtrip, "generate": _generate,
    "corpus build": _corpus_build, "train": _train,
}


def command_name(args: argparse.Namespace) -> str:
    """``"codec roundtrip"``-style name of the parsed command."""
    command = getattr(args, "command", None) or ""
    action = getattr(args, f"{command}_command", None)
    return f"{command} {action}" if isinstance(action, str) else command


def validate_args(args: argparse.Namespace) -> None:
    """Check a parsed command line (see the module docstring); SDSAudioError on the first problem."""
    validator = VALIDATORS.get(command_name(args))
    if validator is not None:
        validator(args)


__all__ = ["INPUT_LENGTHS", "LengthPolicy", "MAX_PROMPT_CHARS", "check_audio_output", "check_creatable",
           "check_float", "check_input_audio", "check_int", "check_prior_duration", "check_prior_name",
           "check_prompt", "check_prompts", "check_seed", "resolve_device", "validate_args"]
