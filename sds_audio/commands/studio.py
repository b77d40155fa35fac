"""``sds-audio`` subcommands: studio (``sds-audio ui``, the gradio web UI; extra ``ui``)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path


def _cmd_ui(args: argparse.Namespace) -> int:
    from ..errors import SDSAudioError
    from ..ui import require_gradio

    require_gradio()                        # the extra's error before anything else
    from ..ui.app import launch
    from ..ui.runs import StudioSettings

    if not 0 < args.max_upload_mb <= 10_000:
        raise SDSAudioError("--max-upload-mb must be between 0 and 10000")
    if args.port is not None and not 0 < args.port < 65536:
        raise SDSAudioError(f"--port must be between 1 and 65535, got {args.port}")
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sds-audio-studio-"))
    if workdir.exists() and not workdir.is_dir():
        raise SDSAudioError(f"--workdir {workdir} is a file; give a directory")
    settings = StudioSettings(workdir=workdir.resolve(), prior=args.prior, device=args.device,
                              codec_precision=args.codec_precision, judge=not args.no_judge,
                              max_upload_mb=args.max_upload_mb)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"sds-audio ui: serving on {args.host}: anyone who can reach this address can run jobs and read "
              f"{workdir}")
    print(f"sds-audio ui: runs are written to {workdir}; Ctrl-C stops the studio")
    launch(settings, host=args.host, port=args.port, block=True)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add this module's subcommands to ``sub``."""
    p = sub.add_parser("ui", help="the studio: a web UI in the browser (needs the extra: pip install 'sds-audio[ui]')")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to serve on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)")
    p.add_argument("--port", type=int, default=None, help="port (default: 7860, or the next free one)")
    p.add_argument("--prior", default="embedded",
                   help="embedded (shipped), stable-audio-open, or a prior directory (default: embedded)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: cuda if available)")
    p.add_argument("--codec-precision", choices=("auto", "float32", "bfloat16"), default="auto",
                   help="embedded prior: its codec's precision during optimisation (default auto)")
    p.add_argument("--no-judge", action="store_true", help="do not load the judge (no scores, no restart choice)")
    p.add_argument("--workdir", default=None, help="where run directories go (default: a new temporary directory)")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload accepted (default 50 MB)")
    p.set_defaults(func=_cmd_ui)
