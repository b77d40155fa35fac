"""The ``sds-audio`` command.

Each subcommand is a small function that parses nothing itself: argparse does
the parsing, :func:`sds_audio.validation.validate_args` checks the options and
inputs before anything is loaded or created, and the function calls the
library and prints a short summary. User errors
(:class:`~sds_audio.errors.SDSAudioError`, and the OS / JSON / decoding errors
that :func:`sds_audio.user_errors.as_user_error` translates) print one line on
stderr, without a traceback, and exit non-zero (2 for invalid input, 1 for a
missing or broken model or a full disk); so do argparse's own errors. Warnings
print as one line each (``sds-audio: warning: ...``). Ctrl-C exits 130 and
SIGTERM 143; a run stopped either way writes its checkpoint at the end of the
step it is in (:mod:`sds_audio.interrupts`).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .console import OneLineParser, error_line, one_line_warnings, stopped
from .errors import SDSAudioError
from .interrupts import terminate_as_exception
from .paths import removing_new_dirs


# -- subcommands -------------------------------------------------------------------------
def _cmd_render(args: argparse.Namespace) -> int:
    from .audio_io import save_audio
    from .presets import load_preset

    preset = load_preset(args.preset, voice=args.voice)
    audio = preset.render(duration_s=args.duration_s, f0_hz=args.f0_hz)
    out = Path(args.output)
    _refuse_existing(out, args.overwrite)
    peak = float(audio.abs().max())
    save_audio(out, audio, preset.sample_rate)
    clip = "  (clipped at full scale)" if peak > 1.0 else ""
    print(f"wrote {out}: {audio.shape[-1] / preset.sample_rate:.2f} s, {audio.shape[1]} ch, "
          f"{preset.sample_rate} Hz, peak {peak:.3f}{clip}")
    return 0


def _print_concepts() -> int:
    from .corpus.concepts import CONCEPTS

    print(f"the embedded prior knows {len(CONCEPTS)} concepts (a prompt is read as the closest one):")
    for family in sorted({c.family for c in CONCEPTS}):
        names = sorted(c.name for c in CONCEPTS if c.family == family)
        print(f"  {family:18s} {', '.join(names)}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    if getattr(args, "concepts", False):
        return _print_concepts()
    import torch

    print(f"sds-audio {__version__}")
    print(f"python    {platform.python_version()}")
    print(f"torch     {torch.__version__}")
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        from .priors.embedded import cpu_has_amx_bf16

        amx = "AMX bfloat16: the embedded prior's codec runs in bfloat16" if cpu_has_amx_bf16() else "no AMX"
        device = f"cpu ({torch.get_num_threads()} threads, {amx})"
    print(f"device    {device}")
    try:
        from .priors.registry import describe_priors
    except ImportError:
        print("priors    (registry not available in this build)")
        return 0
    print("priors:")
    for name, status in describe_priors().items():
        print(f"  {name:26s} {status}")
    return 0


def _cmd_corpus_build(args: argparse.Namespace) -> int:
    from .corpus.build import build_corpus, build_judge_corpus

    with removing_new_dirs(args.out_dir):
        if args.judge:
            if args.seed != 0:
                raise SDSAudioError("--judge builds with the independent judge's own seed; do not give --seed")
            summary = build_judge_corpus(args.out_dir, small=args.small, n_per_concept=args.n_per_concept,
                                         workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
        else:
            summary = build_corpus(args.out_dir, seed=args.seed, small=args.small, n_per_concept=args.n_per_concept,
                                   workers=args.workers, overwrite=args.overwrite, progress=not args.quiet)
    print(summary.table())
    print(f"wrote {summary.n_clips} clips of {summary.n_concepts} concepts "
          f"({summary.total_audio_s / 3600:.2f} h of audio) to {summary.out_dir} in {summary.seconds:.0f} s")
    return 0


def _cmd_codec_roundtrip(args: argparse.Namespace) -> int:
    from .codec.roundtrip import roundtrip

    out = Path(args.output)
    _refuse_existing(out, args.overwrite)
    result = roundtrip(args.input, out, weights=args.weights)
    print(f"wrote {result.out_path}: latents {tuple(result.latent_shape)}, "
          f"spectral distance {result.spectral_distance:.3f}, SNR {result.snr_db:.1f} dB")
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from .audio_io import save_audio
    from .flow.generate import generate

    out = Path(args.output)
    _refuse_existing(out, args.overwrite)
    audio = generate(args.prompt, seconds=args.seconds, steps=args.steps, cfg=args.cfg, seed=args.seed,
                     negative=args.negative, method=args.sampler, sway_coef=args.sway or None,
                     assets_dir=args.assets, device=args.device)
    peak = float(audio.abs().max())
    note = ""
    if peak > 1.0:  # the codec can overshoot on sharp onsets: scale down rather than clip
        audio = audio * (0.99 / peak)
        note = f", scaled by {20 * math.log10(0.99 / peak):.1f} dB to avoid clipping"
    save_audio(out, audio, 22050)
    print(f"wrote {out}: {audio.shape[-1] / 22050:.2f} s at 22050 Hz{note}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model == "tts":
        from .commands.tts import run_train_tts

        return run_train_tts(args)
    common = dict(steps=args.steps, seed=args.seed, resume=not args.no_resume)
    common = {k: v for k, v in common.items() if v is not None}
    if args.batch_size is not None:
        common["batch_size"] = args.batch_size
    if args.lr is not None:
        common["lr"] = args.lr
    if args.model == "codec":
        from .codec.train import codec_recipe, decoder_finetune_recipe, train_codec

        recipe = codec_recipe()
        if args.init_from is not None:  # the file's architecture, not the recipe's
            recipe.pop("config")
        if args.decoder_only:
            recipe.update(decoder_finetune_recipe())
        with removing_new_dirs(args.out):
            metrics = train_codec(args.corpus, args.out, adversarial=args.adversarial, fp16=True,
                                  init_from=args.init_from, decoder_only=args.decoder_only, **{**recipe, **common})
    elif args.model == "flow":
        from .flow.train import flow_recipe, train_flow

        if not args.codec:
            raise SDSAudioError("train flow needs --codec PATH (the codec .safetensors the prior will ship with)")
        recipe = flow_recipe()
        for key in ("init_from", "caption_augment", "text_noise"):
            if getattr(args, key) is not None:
                recipe[key] = getattr(args, key)
        with removing_new_dirs(args.out):
            metrics = train_flow(args.corpus, args.out, args.codec, **{**recipe, **common})
    else:
        from .judge import train_judge

        with removing_new_dirs(args.out):
            metrics = train_judge(args.corpus, args.out, **common)
    summary = {k: v for k, v in metrics.items() if isinstance(v, (int, float, str))}
    print(f"trained {args.model} into {args.out}: " + ", ".join(f"{k}={v}" for k, v in list(summary.items())[:8]))
    return 0


def _job_options(args: argparse.Namespace):
    from .jobs import JobOptions

    return JobOptions(prior=args.prior, steps=args.steps, seed=args.seed, device=args.device,
                      guidance_scale=args.cfg, negative_prompt=args.negative,
                      duration_s=getattr(args, "duration_s", 1.5),
                      restarts=getattr(args, "restarts", None), population=getattr(args, "population", None),
                      keep_best_every=getattr(args, "keep_best_every", None), lr=args.lr, denoise_steps=args.denoise_steps, judge=not args.no_judge,
                      codec_precision=args.codec_precision, progress=not args.quiet)


def _cmd_prompt_to_preset(args: argparse.Namespace) -> int:
    from .jobs import prompt_to_preset

    if args.resume is None and (args.prompt is None or args.output is None):
        raise SDSAudioError(f"give a prompt and -o DIR (or --resume DIR), e.g. "
                            f"sds-audio {args.command} \"kick drum, bass, reverb\" -o kick/")
    if args.resume is not None and args.prompt is not None:
        raise SDSAudioError("--resume continues the run recorded in DIR/run.json; do not give a prompt with it")
    out = args.resume if args.resume is not None else args.output
    try:
        record = prompt_to_preset(args.command, args.prompt, out, _job_options(args), overwrite=args.overwrite,
                                  resume=args.resume is not None, init=getattr(args, "init", None))
    except KeyboardInterrupt as exc:
        return stopped(exc, _resume_advice(args.command, out))
    judge = ""
    if record["judge_final"]:
        best = record["best_restart"]
        judge = f", judge score {record['judge_initial'][best]:.3f} -> {record['judge_final'][best]:.3f}"
    reading = "".join(f"; prompt {r['summary']}" for r in record.get("prompt_reading") or [])
    print(f"wrote {out}/: {', '.join(record['outputs'])}, run.json "
          f"({record['timings_s']['optimise']:.0f} s{judge}{reading})")
    return 0


def _separation_method(args: argparse.Namespace) -> str:
    """``--method`` as given; without it, ``latent`` when an option only the latent method reads is set, else ``mask``."""
    if args.method is not None:
        return args.method
    latent_only = (args.init != "prior_mask" or args.decoding != "residual" or args.lr_schedule != "constant"
                   or args.sds_target != "source")
    return "latent" if latent_only else "mask"


def _cmd_separate(args: argparse.Namespace) -> int:
    from .jobs import separate_file

    if args.resume is None and (args.mixture is None or args.output is None):
        raise SDSAudioError("give a mixture, one -p PROMPT per source and -o DIR (or --resume DIR)")
    if args.resume is not None and (args.mixture is not None or args.prompt):
        raise SDSAudioError("--resume continues the run recorded in DIR/run.json; give no mixture or prompts")
    out = args.resume if args.resume is not None else args.output
    try:
        record = separate_file(args.mixture, args.prompt, out, _job_options(args), gamma=args.gamma,
                               init=args.init, residual_decoding=args.decoding == "residual",
                               mask_refinements=args.mask_refinements, lr_schedule=args.lr_schedule,
                               sds_target=args.sds_target, method=_separation_method(args), mask_lr=args.mask_lr,
                               overwrite=args.overwrite,
                               resume=args.resume is not None)
    except KeyboardInterrupt as exc:
        return stopped(exc, _resume_advice("separate", out))
    scores = ""
    if record["judge_sources"]:
        scores = ", judge " + ", ".join(f"{s:.3f} (mixture {m:.3f})"
                                        for s, m in zip(record["judge_sources"], record["judge_mixture"]))
    print(f"wrote {out}/: {', '.join(record['outputs'])} ({record['timings_s']['optimise']:.0f} s{scores})")
    return 0


def _cmd_match(args: argparse.Namespace) -> int:
    from .jobs import match_file
    from .tasks.match import MatchConfig

    config = MatchConfig(steps=args.steps, restarts=args.restarts, seed=args.seed)
    try:
        record = match_file(args.target, args.synth, args.output, config, device=args.device,
                            overwrite=args.overwrite, progress=not args.quiet)
    except KeyboardInterrupt as exc:
        return stopped(exc, f"a match cannot resume, so nothing was kept in {args.output}")
    best = record["best_restart"]
    print(f"wrote {args.output}/: sound.wav, preset.json, report.png, run.json (spectral distance "
          f"{record['distance_initial'][best]:.3f} -> {record['distance_final'][best]:.3f}, "
          f"{record['timings_s']['optimise']:.0f} s)")
    return 0


def _add_job_options(p: argparse.ArgumentParser, *, synthesis: bool, default_steps: int) -> None:
    p.add_argument("--prior", default="embedded",
                   help="embedded (shipped), stable-audio-open, or a prior directory (default: embedded)")
    if synthesis:
        p.add_argument("--steps", type=int, default=None,
                       help="optimisation steps (default: the synth's, 120 for fm / dx7, 150 for impact)")
    else:
        p.add_argument("--steps", type=int, default=default_steps, help=f"optimisation steps (default {default_steps})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    p.add_argument("--cfg", type=float, default=5.0, help="classifier-free guidance scale (default 5)")
    p.add_argument("--negative", default=None, help="negative prompt")
    p.add_argument("--denoise-steps", type=int, default=4, help="k, denoising steps per SDS update (default 4)")
    p.add_argument("--lr", type=float, default=0.05 if synthesis else 0.25,
                   help="Adam learning rate" + ("" if synthesis else " (a fraction of the latents' RMS per step)"))
    if synthesis:
        p.add_argument("--duration-s", type=float, default=1.5, help="sound length in seconds (default 1.5)")
        p.add_argument("--restarts", type=int, default=None,
                       help="restarts optimised together (default: the synth's, 2 for fm / dx7, 4 for impact)")
        p.add_argument("--population", type=int, default=None,
                       help="structured draws the prior scores before SDS; the best --restarts become the "
                            "restarts (default: 32 for fm / dx7, 0 = off for impact)")
        p.add_argument("--keep-best-every", type=int, default=None, metavar="N",
                       help="end each restart at its best state by the prior's score, checked every N steps "
                            "(default: 20 for fm / dx7, 0 = off for impact)")
    p.add_argument("--no-judge", action="store_true", help="do not load the judge (no restart selection by score)")
    p.add_argument("--codec-precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="embedded prior: run its codec in bfloat16 (auto: on CPUs with AMX, where it is ~2x faster)")
    p.add_argument("--overwrite", action="store_true", help="replace the run files in an existing -o directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise SDSAudioError(f"{path} exists; pass --overwrite to replace it")


def _resume_advice(command: str, out: str | Path) -> str:
    """What to do after a stop: resume if the run got as far as its run directory, else run it again."""
    if (Path(out) / "run.json").is_file():
        return f"continue with: sds-audio {command} --resume {out}"
    return "it stopped before writing anything; run the command again"




# -- parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="sds-audio", description="Differentiable sound synthesis and Audio-SDS: prompt to preset.")
    parser.add_argument("--version", action="version", version=f"sds-audio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("render", help="render a preset file (or a DX7 .syx voice) to a WAV file")
    p.add_argument("preset", help="preset JSON file, or a DX7 .syx single voice / 32-voice bank")
    p.add_argument("--voice", type=int, default=None, help="with a .syx bank: the voice to render (1..32)")
    p.add_argument("-o", "--output", required=True,
                   help="output audio file; the extension picks the format: .wav or .flac (24-bit), .ogg, .mp3")
    p.add_argument("--duration-s", type=float, default=None, help="render this long instead of the preset's duration")
    p.add_argument("--f0-hz", type=float, default=None, help="play an FM preset at this pitch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_render)

    for name, what in (("fm", "an FM synth patch"), ("impact", "a modal impact (struck object) model"),
                       ("dx7", "a DX7 voice (also voice.syx)")):
        p = sub.add_parser(name, help=f"prompt -> {what}: writes sound.wav, preset.json, report.png, run.json")
        p.add_argument("prompt", nargs="?", help="what the sound should be, e.g. \"kick drum, bass, reverb\"")
        p.add_argument("-o", "--output", help="output directory (refused if it holds files, unless --overwrite)")
        p.add_argument("--resume", metavar="DIR", default=None, help="continue an interrupted run in DIR")
        if name == "dx7":
            p.add_argument("--init", metavar="BANK.syx:N", default=None,
                           help="start every restart from this voice (a .syx file, :N picks a bank's voice, "
                                "or a dx7 preset .json) instead of random voices of different algorithms")
        _add_job_options(p, synthesis=True, default_steps=150)
        p.set_defaults(func=_cmd_prompt_to_preset)

    p = sub.add_parser("separate", help="mixture + one prompt per source -> one WAV per source, report.png, "
                                        "run.json")
    p.add_argument("mixture", nargs="?", help="the mixture (any format libsndfile reads; any rate; mono or stereo; "
                                              "at most 300 s)")
    p.add_argument("-p", "--prompt", action="append", default=[], help="one per source, in order (two or more)")
    p.add_argument("-o", "--output", help="output directory (refused if it holds files, unless --overwrite)")
    p.add_argument("--resume", metavar="DIR", default=None, help="continue an interrupted run in DIR")
    p.add_argument("--gamma", type=float, default=0.3, help="weight of the SDS terms (0 = reconstruction only)")
    p.add_argument("--method", choices=["mask", "latent"], default=None,
                   help="mask (default): soft masks on the mixture's STFT, moved by SDS from the prior-mask split; "
                        "the sources always sum to the mixture. latent: the sources as codec latents, chosen "
                        "without --method when --init, --lr-schedule, --sds-target or --decoding is set otherwise "
                        "than its default (it was made for --steps 200)")
    p.add_argument("--mask-lr", type=float, default=None, metavar="LR",
                   help="with --method mask: step size on the mask logits (default: the library's)")
    p.add_argument("--init", choices=["prior_mask", "mixture", "split"], default="prior_mask",
                   help="each source's start: the mixture split by masks of the prior's renditions of it under "
                        "each prompt (default), the whole mixture, or the mixture over the source count")
    p.add_argument("--mask-refinements", type=int, default=0, metavar="N",
                   help="with --init prior_mask: passes that re-render each source from the previous split "
                        "rather than from the mixture (default: 0)")
    p.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant",
                   help="step size over each window's steps: constant (default), or falling to 0 along a half "
                        "cosine")
    p.add_argument("--sds-target", choices=["source", "mixture_split"], default="source",
                   help="what each SDS term pulls its source toward: the prior's rendition of it (default), or "
                        "its part of the mixture split by the masks of all the sources' renditions")
    p.add_argument("--decoding", choices=["residual", "direct"], default="residual",
                   help="each source is its start plus the decoded change of its latents (default), or the "
                        "decoded latents themselves")
    _add_job_options(p, synthesis=False, default_steps=40)
    p.set_defaults(func=_cmd_separate)

    p = sub.add_parser("match", help="recording -> preset of a synth (spectral sound matching, no prior): writes "
                                     "sound.wav, preset.json, report.png, run.json")
    p.add_argument("target", help="the recording to imitate (any format libsndfile reads; mono or stereo; "
                                  "at most 30 s)")
    p.add_argument("-o", "--output", required=True, help="output directory (refused if it holds files, "
                                                         "unless --overwrite)")
    p.add_argument("--synth", choices=("impact", "fm"), default="impact", help="synth to fit (default impact)")
    p.add_argument("--steps", type=int, default=300, help="Adam steps (default 300)")
    p.add_argument("--restarts", type=int, default=8, help="random starts optimised together (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    p.add_argument("--overwrite", action="store_true", help="replace the run files in an existing -o directory")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_match)

    p = sub.add_parser("corpus", help="captioned training corpus")
    corpus_sub = p.add_subparsers(dest="corpus_command", required=True, metavar="ACTION")
    q = corpus_sub.add_parser("build", help="render the captioned corpus (fluidsynth + procedural sounds)")
    q.add_argument("out_dir", help="output directory (must not hold a corpus unless --overwrite)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--small", action="store_true", help="a few clips per concept (for trying things out)")
    q.add_argument("--n-per-concept", type=int, default=None, help="clips per concept (default 60)")
    q.add_argument("--workers", type=int, default=2, help="worker processes (at most 2)")
    q.add_argument("--judge", action="store_true",
                   help="build the independent judge's corpus instead (MuseScore General, its own seed and "
                        "procedural ranges; the prior never sees it)")
    q.add_argument("--overwrite", action="store_true")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_cmd_corpus_build)
    from .commands import tts as tts_commands

    tts_commands.add_corpus_parsers(corpus_sub)

    p = sub.add_parser("codec", help="the neural audio codec")
    codec_sub = p.add_subparsers(dest="codec_command", required=True, metavar="ACTION")
    q = codec_sub.add_parser("roundtrip", help="encode and decode a file through the codec")
    q.add_argument("input", help="input audio file (any rate, mono or stereo, at most 120 s; resampled to the "
                                 "codec's)")
    q.add_argument("-o", "--output", required=True, help="output audio file (.wav, .flac, .ogg or .mp3)")
    q.add_argument("--weights", default=None, help="codec .safetensors (default: the shipped one)")
    q.add_argument("--overwrite", action="store_true")
    q.set_defaults(func=_cmd_codec_roundtrip)

    p = sub.add_parser("generate", help="text to audio with the embedded flow-matching prior")
    p.add_argument("prompt")
    p.add_argument("-o", "--output", required=True, help="output audio file, 22050 Hz mono (.wav, .flac, .ogg or "
                                                         ".mp3)")
    p.add_argument("--seconds", type=float, default=None, help="duration (default: the model's window)")
    p.add_argument("--steps", type=int, default=32, help="sampler steps")
    p.add_argument("--cfg", type=float, default=4.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--negative", default=None, help="negative prompt")
    p.add_argument("--sampler", choices=("euler", "midpoint"), default="euler")
    p.add_argument("--sway", type=float, default=-1.0, help="sway sampling coefficient (0 = off)")
    p.add_argument("--assets", default=None, help="directory with codec/flow .safetensors (default: shipped)")
    p.add_argument("--device", default=None)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("train", help="train the embedded codec, flow prior or judge on a corpus, or the speech model")
    p.add_argument("model", choices=("codec", "flow", "judge", "tts"))
    p.add_argument("--corpus", required=False, help="corpus directory (sds-audio corpus build); required except "
                                                    "for tts")
    p.add_argument("--out", required=True, help="run directory: checkpoints, final weights, metrics.json")
    p.add_argument("--codec", default=None, help="(flow) the frozen codec .safetensors")
    p.add_argument("--steps", type=int, default=None, help="total optimiser steps (default: the model's recipe)")
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-resume", action="store_true", help="start over even if a checkpoint exists")
    p.add_argument("--adversarial", action="store_true", help="(codec) add the STFT discriminator")
    p.add_argument("--init-from", default=None, metavar="WEIGHTS",
                   help="(codec, flow) start from these weights (.safetensors) instead of a fresh model; (tts) copy "
                        "the tensors of this speech model whose names and shapes fit")
    p.add_argument("--caption-augment", type=float, default=None, metavar="P",
                   help="(flow) probability of training a row on a rewrite of its caption (default: the recipe's)")
    p.add_argument("--text-noise", type=float, default=None, metavar="R",
                   help="(flow) largest relative noise on the text embeddings (default: the recipe's)")
    p.add_argument("--decoder-only", action="store_true",
                   help="(codec, with --init-from) train the decoder alone; the latents stay the same, so flow "
                        "models trained on them keep working")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    tts_commands.add_train_arguments(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("info", help="version, torch, device and which priors are available")
    p.add_argument("--concepts", action="store_true", help="list the concepts the embedded prior knows")
    p.set_defaults(func=_cmd_info)

    from .commands import batch, export, studio, tts

    for module in (export, tts, studio, batch):
        module.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from .user_errors import as_user_error
    from .validation import validate_args

    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    with one_line_warnings(), terminate_as_exception():
        try:
            validate_args(args)            # options and inputs, before anything is loaded or created
            return func(args)
        except KeyboardInterrupt as exc:
            return stopped(exc, "nothing more was done")
        except Exception as exc:  # noqa: BLE001 - user errors are printed, anything else keeps its traceback
            error = as_user_error(exc)
            if error is None:
                raise
            print(f"sds-audio: error: {error_line(error)}", file=sys.stderr)
            return error.exit_code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
