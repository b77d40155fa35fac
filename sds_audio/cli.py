"""The ``sds-audio`` command.

Each subcommand is a small function that parses nothing itself: argparse does
the parsing, the function calls the library and prints a short summary.
User errors (:class:`~sds_audio.errors.SDSAudioError`) print one line on
stderr, without a traceback, and exit non-zero (2 for invalid input);
Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import __version__
from .errors import SDSAudioError


# -- subcommands -------------------------------------------------------------------------
def _cmd_render(args: argparse.Namespace) -> int:
    from .audio_io import save_audio
    from .presets import load_preset

    preset = load_preset(args.preset)
    audio = preset.render(duration_s=args.duration_s, f0_hz=args.f0_hz)
    out = Path(args.output)
    _refuse_existing(out, args.overwrite)
    peak = float(audio.abs().max())
    save_audio(out, audio, preset.sample_rate)
    clip = "  (clipped at full scale)" if peak > 1.0 else ""
    print(f"wrote {out}: {audio.shape[-1] / preset.sample_rate:.2f} s, {audio.shape[1]} ch, "
          f"{preset.sample_rate} Hz, peak {peak:.3f}{clip}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch

    print(f"sds-audio {__version__}")
    print(f"python    {platform.python_version()}")
    print(f"torch     {torch.__version__}")
    if torch.cuda.is_available():
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        device = "mps"
    else:
        device = f"cpu ({torch.get_num_threads()} threads)"
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


def _refuse_existing(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise SDSAudioError(f"{path} exists; pass --overwrite to replace it")


# -- parser ------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sds-audio", description="Differentiable sound synthesis and Audio-SDS: prompt to preset.")
    parser.add_argument("--version", action="version", version=f"sds-audio {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("render", help="render a preset file to a WAV file")
    p.add_argument("preset", help="preset JSON file")
    p.add_argument("-o", "--output", required=True, help="output WAV path (24-bit)")
    p.add_argument("--duration-s", type=float, default=None, help="render this long instead of the preset's duration")
    p.add_argument("--f0-hz", type=float, default=None, help="play an FM preset at this pitch")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser("info", help="version, torch, device and which priors are available")
    p.set_defaults(func=_cmd_info)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SDSAudioError as exc:
        print(f"sds-audio: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("sds-audio: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
