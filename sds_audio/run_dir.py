"""The output directory of a prompt-to-preset or separation run.

A run directory holds what the command produced and what it needs to continue:

``run.json``        full config, seeds, status, timings, versions (written first, updated last)
``*.wav``           the audio (24-bit WAV)
``preset.json``     the preset (synthesis runs)
``report.png``      spectrograms and curves
``checkpoint.pt``   the optimiser state (for ``--resume``)

Rules: a directory that already holds files is refused unless the user asks to
overwrite it (then only the files a run writes are replaced, nothing else is
deleted) or to resume it (then ``run.json`` must say the run is unfinished).
Every file is written atomically.
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

from .atomic import write_json_atomic
from .errors import SDSAudioError

RUN_FILE = "run.json"
RUN_FORMAT = "sds-audio-run"


def versions() -> dict[str, str]:
    """Versions of the software a run depends on."""
    import torch
    import torchaudio

    from . import __version__

    return {"sds_audio": __version__, "torch": torch.__version__, "torchaudio": torchaudio.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


class RunDirectory:
    """A run's output directory.

    Args:
        path: the directory (created if missing).
        overwrite: allow a directory that already holds files; the run's own files are replaced.
        resume: continue the unfinished run recorded in ``path/run.json``.
        resumable: whether the command can resume (only changes the refusal's advice).
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, resume: bool = False, resumable: bool = True):
        self.path = Path(path)
        self.resume = resume
        if self.path.exists() and not self.path.is_dir():
            raise SDSAudioError(f"output directory {self.path} is a file; pass a directory with -o")
        if resume:
            if not (self.path / RUN_FILE).is_file():
                raise SDSAudioError(f"nothing to resume in {self.path}: it has no {RUN_FILE}")
            record = self.read()
            if record.get("status") == "done":
                raise SDSAudioError(f"the run in {self.path} is already finished; start a new one with another -o")
            return
        if self.path.is_dir() and any(self.path.iterdir()) and not overwrite:
            advice = f", or --resume {self.path} to continue an interrupted run" if resumable else ""
            raise SDSAudioError(f"{self.path} exists and is not empty; pass --overwrite to replace its run files"
                                + advice)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SDSAudioError(f"cannot create {self.path}: {exc.strerror or exc}", exit_code=1) from exc

    def file(self, name: str) -> Path:
        return self.path / name

    def read(self) -> dict[str, Any]:
        """The run record (``run.json``)."""
        path = self.path / RUN_FILE
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SDSAudioError(f"cannot read {path}: {exc}") from exc
        if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
            raise SDSAudioError(f"{path} is not an sds-audio run record")
        return record

    def write(self, record: dict[str, Any]) -> None:
        """Write ``run.json`` (adds the format tag, command line and versions)."""
        full = {"format": RUN_FORMAT, "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "versions": versions()}
        full.update(record)
        write_json_atomic(self.path / RUN_FILE, full)
