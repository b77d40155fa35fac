"""``sds-audio`` subcommands of the speech model: ``tts``, ``corpus speech`` and ``train tts``.

``tts`` is added by :func:`add_parsers`; ``corpus speech`` joins the ``corpus``
group (:func:`add_corpus_parsers`) and ``train tts`` the ``train`` command
(:func:`add_train_arguments`, :func:`run_train_tts`), both called from
:func:`sds_audio.cli.build_parser`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..errors import SDSAudioError


def _cmd_tts(args: argparse.Namespace) -> int:
    import torch

    from ..audio_io import save_audio
    from ..tts import load_tts

    out = Path(args.output)
    if out.suffix.lower() not in (".wav", ".flac"):
        raise SDSAudioError(f"output {out} must end in .wav or .flac")
    if out.exists() and not args.overwrite:
        raise SDSAudioError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise SDSAudioError(f"cannot write {out}: directory {out.parent} does not exist")
    if args.threads:
        torch.set_num_threads(args.threads)
    text = args.text
    if text == "-":
        import sys

        text = sys.stdin.read()
    if args.voice_text is not None and args.voice is None:
        raise SDSAudioError("--voice-text is the transcript of --voice REF.wav: give both")
    if args.adapt_steps is not None and args.voice_text is None:
        raise SDSAudioError("--adapt-steps applies to adapting to a voice: give --voice REF.wav and --voice-text")
    start = time.time()
    speaker = load_tts(args.weights, codec=args.codec)
    loaded = time.time()
    voice = args.voice
    if args.voice_text is not None:
        speaker = speaker.adapt(args.voice, args.voice_text, steps=args.adapt_steps, seed=args.seed,
                                progress=not args.quiet)
        voice = None                       # the adapted copy's built-in voice is the reference
        print(f"adapted to {args.voice} in {time.time() - loaded:.1f} s")
    adapted = time.time()
    audio, rate = speaker.speak(text, voice=voice, steps=args.steps, guidance=args.cfg, speed=args.speed,
                                seed=args.seed, progress=not args.quiet)
    done = time.time()
    save_audio(out, audio[None], rate, subtype="PCM_24")
    seconds = audio.shape[-1] / rate
    print(f"wrote {out}: {seconds:.2f} s at {rate} Hz (load {loaded - start:.1f} s, synthesis "
          f"{done - adapted:.1f} s, real-time factor {(done - adapted) / max(seconds, 1e-9):.2f})")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add ``tts`` to ``sub``."""
    p = sub.add_parser("tts", help="text to speech with the speech model (shipped weights by default)")
    p.add_argument("text", help="English text to speak (long text is split into sentences); '-' reads stdin")
    p.add_argument("-o", "--output", required=True, help="output .wav (24-bit) or .flac")
    p.add_argument("--voice", default=None, metavar="REF.wav",
                   help="2-10 s of speech whose voice to use (no transcript needed; default: the built-in voice)")
    p.add_argument("--voice-text", default=None, metavar="TEXT",
                   help="the words --voice says: adapt a copy of the model to that voice first (carries voices "
                        "unlike the training voices; about 10 s on one CPU thread)")
    p.add_argument("--adapt-steps", type=int, default=None,
                   help="adaptation steps with --voice-text (default 50)")
    p.add_argument("--steps", type=int, default=16, help="ODE steps per sentence (default 16)")
    p.add_argument("--cfg", type=float, default=2.0, help="classifier-free guidance scale (default 2)")
    p.add_argument("--speed", type=float, default=1.0, help="speaking-rate factor, 0.5 to 2 (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default=None, help="tts .safetensors (default: the shipped one)")
    p.add_argument("--codec", default=None, help="(weights over codec latents) codec .safetensors to decode with "
                                                 "(default: the weights' own)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_tts)


def _cmd_corpus_speech(args: argparse.Namespace) -> int:
    from ..corpus.speech import build_speech_corpus

    out = Path(args.out_dir)
    if (out / "metadata.csv").exists() and not args.resume:
        raise SDSAudioError(f"{out} already holds a corpus; pass --resume to finish or extend it, or use another "
                            "directory")
    voices = args.voices.split(",") if args.voices else None
    heldout = args.heldout_voices.split(",") if args.heldout_voices is not None else None
    kwargs = {}
    if voices is not None:
        kwargs["train_voices"] = [v for v in voices if v]
    if heldout is not None:
        kwargs["heldout_voices"] = [v for v in heldout if v]
    summary = build_speech_corpus(out, n_train=args.sentences, n_valid=args.valid, n_test=args.test, seed=args.seed,
                                  workers=args.workers, progress=not args.quiet, **kwargs)
    hours = sum(summary.hours.values())
    print(f"wrote {summary.n_utterances} utterances ({summary.n_sentences} sentences, {hours:.2f} h) to {out} "
          f"in {summary.seconds:.0f} s")
    return 0


def add_corpus_parsers(corpus_sub: argparse._SubParsersAction) -> None:
    """Add ``speech`` to the ``corpus`` group."""
    from ..corpus.speech import HELDOUT_VOICES, TRAIN_VOICES, VOICES

    q = corpus_sub.add_parser("speech", help="LJSpeech-layout speech corpus spoken by offline synthesisers "
                                             "(flite, espeak-ng) from public-domain sentences")
    q.add_argument("out_dir", help="output directory (wavs/, metadata.csv, speakers.csv, corpus.json)")
    q.add_argument("--sentences", type=int, default=8000, help="training sentences (default 8000)")
    q.add_argument("--valid", type=int, default=100, help="validation sentences, spoken by every voice")
    q.add_argument("--test", type=int, default=150, help="test sentences, spoken by every voice")
    q.add_argument("--voices", default=None, help=f"training voices, comma-separated (default {','.join(TRAIN_VOICES)}; "
                                                  f"known: {','.join(VOICES)})")
    q.add_argument("--heldout-voices", default=None,
                   help=f"voices kept out of training (default {','.join(HELDOUT_VOICES)})")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--workers", type=int, default=2, help="synthesiser processes at once")
    q.add_argument("--resume", action="store_true", help="keep the wavs already in OUT_DIR and render the rest")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.set_defaults(func=_cmd_corpus_speech)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` command's options that only ``train tts`` reads."""
    p.add_argument("--data", default=None, help="(tts) LJSpeech-layout directory: metadata.csv + wavs/ "
                                                "(+ speakers.csv)")
    p.add_argument("--frames-per-batch", type=int, default=None, help="(tts) padded latent frames per batch")
    p.add_argument("--default-voice", default=None, help="(tts) corpus speaker of the built-in voice")
    p.add_argument("--features", choices=("mel", "codec"), default="mel",
                   help="(tts) frames the model predicts: log-mel (Griffin-Lim vocoder; default) or the codec's latents")
    p.add_argument("--voice-eq", type=float, default=None,
                   help="(tts, mel) largest coefficient of the random equaliser curve on voice-warped rows (default 0)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="(tts) stop with a checkpoint after this many minutes (run again to continue)")


def run_train_tts(args: argparse.Namespace) -> int:
    """``sds-audio train tts --data DIR --out RUN``: train or resume (see :func:`sds_audio.tts.train.train_tts`)."""
    from ..tts.train import train_tts

    if not args.data:
        raise SDSAudioError("train tts needs --data DIR (an LJSpeech-layout directory: metadata.csv + wavs/)")
    if not (Path(args.data) / "metadata.csv").is_file():
        raise SDSAudioError(f"{args.data} has no metadata.csv: give an LJSpeech-layout directory, e.g. one made by "
                            "`sds-audio corpus speech OUT_DIR`")
    out = Path(args.out)
    if args.no_resume and (out / "checkpoint.safetensors").exists():
        raise SDSAudioError(f"{out} holds a checkpoint; --no-resume starts over only in a new --out directory")
    from ..tts.config import TTSConfig

    if args.features == "mel" and args.codec:
        raise SDSAudioError("--codec applies to --features codec only")
    if args.init_from and not Path(args.init_from).is_file():
        raise SDSAudioError(f"--init-from {args.init_from} does not exist")
    config = TTSConfig.for_mel() if args.features == "mel" else TTSConfig()
    kwargs = {"seed": args.seed, "default_voice": args.default_voice, "codec_path": args.codec, "config": config,
              "init_from": args.init_from}
    for key, value in (("steps", args.steps), ("lr", args.lr), ("max_batch", args.batch_size),
                       ("frames_per_batch", args.frames_per_batch), ("voice_eq", args.voice_eq)):
        if value is not None:
            kwargs[key] = value
    if args.max_minutes is not None:
        kwargs["max_seconds_this_run"] = 60.0 * args.max_minutes
    entry = train_tts(args.data, out, **kwargs)
    print(f"trained tts into {out}: step {entry['step']}, validation {entry.get('valid', {})}")
    return 0


__all__ = ["add_corpus_parsers", "add_parsers", "add_train_arguments", "run_train_tts"]
