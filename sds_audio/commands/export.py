"""``sds-audio export FORMAT ...``: presets to the formats other instruments load.

``export`` is a group; each format is a sub-command added to ``export_sub`` by one
function in :data:`FORMAT_PARSERS` (a format defined elsewhere adds its own function there).

``sds-audio export syx RUN_OR_PRESET... -o bank.syx`` writes a DX7 32-voice bank (VMEM):
one voice per input, in order, padded with INIT VOICE. An input is a run directory (its
``preset.json``), a preset ``.json``, or a DX7 voice (``x.syx``, ``bank.syx:N``). dx7 presets
export exactly (rounded); FM presets are fitted by sound matching and the remaining spectral
distance is printed; other synths are refused. Everything is checked, and every voice made,
before the file is written (atomically).

``sds-audio export sfz PRESET -o DIR [--keys 36-96 --step 3]`` renders one preset (same inputs)
across the keyboard into an SFZ instrument folder, ``DIR/NAME.sfz`` beside 24-bit WAV samples
(:mod:`sds_audio.exports.sfz`); the folder appears complete or not at all.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Callable

from ..errors import SDSAudioError


def _resolve_input(text: str) -> tuple[str, str]:
    """``(preset spec, fallback voice name)`` for a run directory, preset file or ``.syx[:N]``."""
    path = Path(text)
    if path.is_dir():
        preset = path / "preset.json"
        if not preset.is_file():
            raise SDSAudioError(f"{path} is a directory without preset.json; give a run directory, a preset "
                                ".json or a .syx voice")
        return str(preset), path.resolve().name
    return text, path.stem.split(":")[0]


def _cmd_export_syx(args: argparse.Namespace) -> int:
    from ..exports.dx7_fit import default_voice_name, preset_to_voice
    from ..exports.syx import BANK_VOICES, write_vmem
    from ..presets import load_preset_spec
    from ..validation import check_int

    out = Path(args.output)
    if out.suffix.lower() != ".syx":
        raise SDSAudioError(f"-o {out}: a DX7 bank is written as a .syx file")
    if out.exists() and not args.overwrite:
        raise SDSAudioError(f"{out} exists; pass --overwrite to replace it")
    if not out.parent.is_dir():
        raise SDSAudioError(f"cannot write {out}: directory {out.parent} does not exist")
    if not 1 <= len(args.inputs) <= BANK_VOICES:
        raise SDSAudioError(f"a DX7 bank holds {BANK_VOICES} voices; got {len(args.inputs)} inputs")
    check_int(args.fit_steps, "--fit-steps", 1, 100_000)
    check_int(args.fit_restarts, "--fit-restarts", 1, 64)
    presets = []
    for text in args.inputs:            # load (and so check) every input before any fitting
        spec, fallback = _resolve_input(text)
        presets.append((text, load_preset_spec(spec), fallback))
    voices = []
    for text, preset, fallback in presets:
        export = preset_to_voice(preset, default_voice_name(preset, fallback), steps=args.fit_steps,
                                 restarts=args.fit_restarts, seed=args.seed, progress=not args.quiet)
        voices.append(export.voice)
        print(f"voice {len(voices):2d} from {text}: {export.describe()}")
    write_vmem(out, voices)
    pad = BANK_VOICES - len(voices)
    print(f"wrote {out}: {len(voices)} voice(s)" + (f", {pad} INIT VOICE" if pad else ""))
    return 0


def _add_syx(export_sub: argparse._SubParsersAction) -> None:
    p = export_sub.add_parser("syx", help="DX7 32-voice bank (.syx) from runs / presets / voices")
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_PRESET",
                   help="run directories, preset .json files or DX7 voices (x.syx, bank.syx:N); up to 32")
    p.add_argument("-o", "--output", required=True, help="the bank to write (.syx)")
    p.add_argument("--fit-steps", type=int, default=100,
                   help="sound-matching steps per FM preset (default 100: about 1.5 CPU-minutes for a 1 s preset)")
    p.add_argument("--fit-restarts", type=int, default=8,
                   help="random DX7 voices (each another algorithm) fitted per FM preset (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_export_syx)


def _cmd_export_sfz(args: argparse.Namespace) -> int:
    from ..exports.sfz import check_keys, parse_key_range, write_sfz
    from ..presets import load_preset_spec

    lo, hi, step = check_keys(parse_key_range(args.keys), args.step)
    spec, fallback = _resolve_input(args.preset)
    export = write_sfz(load_preset_spec(spec), args.output, name=args.name or fallback, keys=(lo, hi), step=step,
                       duration_s=args.duration_s, overwrite=args.overwrite)
    how = "looped (sustained)" if export.sustained else "one-shot (percussive)"
    quieter = f", turned down {-export.gain_db:.1f} dB" if export.gain_db < 0 else ""
    print(f"wrote {export.sfz_path}: {len(export.regions)} sample(s) for keys {lo}-{hi}, {how}, "
          f"ampeg_release {export.release_s:.2f} s{quieter}")
    return 0


def _add_sfz(export_sub: argparse._SubParsersAction) -> None:
    p = export_sub.add_parser("sfz", help="SFZ instrument folder: the preset sampled across the keyboard")
    p.add_argument("preset", metavar="RUN_OR_PRESET",
                   help="a run directory, a preset .json or a DX7 voice (x.syx, bank.syx:N)")
    p.add_argument("-o", "--output", required=True, help="the folder to write (NAME.sfz and the WAV samples)")
    p.add_argument("--keys", default="36-96", help="lowest-highest MIDI key the instrument covers (default 36-96)")
    p.add_argument("--step", type=int, default=3, help="keys from one sample to the next (default 3)")
    p.add_argument("--name", help="name of the .sfz and its samples (default: the input's name)")
    p.add_argument("--duration-s", type=float, default=None,
                   help="render length the envelope is judged on (default: the preset's duration)")
    p.add_argument("--overwrite", action="store_true", help="replace a folder written by an earlier export")
    p.set_defaults(func=_cmd_export_sfz)


#: one function per format, each adding its sub-command to the ``export`` group
FORMAT_PARSERS: list[Callable[[argparse._SubParsersAction], None]] = [_add_syx, _add_sfz]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``export`` group and its formats to ``sub``."""
    p = sub.add_parser("export", help="export presets to other formats: syx (DX7 bank), sfz (sampled instrument)")
    export_sub = p.add_subparsers(dest="export_command", required=True, metavar="FORMAT")
    for add in FORMAT_PARSERS:
        add(export_sub)
