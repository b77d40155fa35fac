"""The preset's extra downloads that a run directory does not already hold.

A prompt-to-preset run directory holds ``preset.json``, ``sound.wav`` and, for a ``dx7``
run, ``voice.syx`` (:func:`sds_audio.jobs.prompt_to_preset` writes them).
``export_preset(preset_json, run_dir)`` adds ``instrument_sfz.zip``: the SFZ instrument
folder of :func:`sds_audio.exports.sfz.write_sfz` (the ``.sfz`` and its samples, keys
36-96), zipped so that it downloads as one file. When the installed library has no SFZ
exporter it adds nothing. An export that fails (a preset the format cannot hold) does
not fail the run: its message comes back in the notes.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ..atomic import atomic_path
from ..errors import SDSAudioError


def _zip_folder(folder: Path, target: Path) -> Path:
    """``folder`` as ``target`` (a .zip whose entries sit under the folder's name), written atomically."""
    with atomic_path(target) as tmp:
        made = shutil.make_archive(str(tmp.with_suffix("")), "zip", root_dir=folder.parent, base_dir=folder.name)
        Path(made).replace(tmp)
    return target


def export_preset(preset_json: str | Path, run_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Write the SFZ instrument of ``preset_json`` into ``run_dir`` (see the module docstring).

    Returns:
        ``(files to offer for download, one note per export that failed)``.
    """
    try:
        from ..exports.sfz import write_sfz
    except ImportError:
        return [], []
    from ..presets import load_preset

    run_dir = Path(run_dir)
    folder = run_dir / "instrument_sfz"
    try:
        write_sfz(load_preset(preset_json), folder, name="instrument", overwrite=True)
    except SDSAudioError as exc:
        return [], [f"SFZ export: {exc}"]
    return [_zip_folder(folder, run_dir / "instrument_sfz.zip")], []
