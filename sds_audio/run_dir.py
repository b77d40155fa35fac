"""The output directory of a prompt-to-preset, separation or matching run.

A run directory holds what the command produced and what it needs to continue:

``run.json``        full config, seeds, status, timings, versions, creation time (written first, updated last)
``*.wav``           the audio (24-bit WAV)
``preset.json``     the preset (synthesis and matching runs)
``report.png``      spectrograms and curves
``checkpoint.pt``   the optimiser state (for ``--resume``)

Rules: a directory that already holds files is refused unless the user asks to
overwrite it (then only the files a run writes are replaced, nothing else is
deleted) or to resume it (then ``run.json`` must say the run is unfinished).
Constructing a :class:`RunDirectory` only checks; the directory is created by the
first :meth:`~RunDirectory.write`, after the models have loaded, so a failed load
leaves nothing behind. Every file is written atomically; temporary files left by
a killed process (``kill -9`` mid-write) are removed when the directory is reused.
A run that fails records ``"status": "failed"`` and the error in ``run.json``
(never ``"running"``); :meth:`~RunDirectory.discard` removes what a run wrote
when there is nothing worth keeping.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import platform
import re
import sys
from pathlib import Path
from typing import Any, Iterator

from .atomic import write_json_atomic
from .errors import SDSAudioError
from .paths import check_output_dir, missing_dirs, remove_created_dirs

RUN_FILE = "run.json"
RUN_FORMAT = "sds-audio-run"
#: statuses of a run that has not finished
UNFINISHED = ("running", "interrupted", "failed")
# a temporary file of sds_audio.atomic.atomic_path: ".<name>.<8 random characters><suffix of name>"
_TEMP_FILE = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}(?P<suffix>\.[^.]*)?$")


def versions() -> dict[str, str]:
    """Versions of the software a run depends on."""
    import torch
    import torchaudio

    from . import __version__

    return {"sds_audio": __version__, "torch": torch.__version__, "torchaudio": torchaudio.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def utc_now() -> str:
    """The current time, ``YYYY-MM-DDTHH:MM:SSZ``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SDSAudioError(f"cannot read {path}: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != RUN_FORMAT:
        raise SDSAudioError(f"{path} is not an sds-audio run record")
    return record


class RunDirectory:
    """A run's output directory (checked on construction, created by the first :meth:`write`).

    Args:
        path: the directory (created with its parents when the run first writes).
        overwrite: allow a directory that already holds files; the run's own files are replaced.
        resume: continue the unfinished run recorded in ``path/run.json``.
        resumable: whether the command can resume (only changes the refusal's advice).
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False, resume: bool = False, resumable: bool = True):
        self.path = Path(path)
        self.resume = resume
        self._created: list[Path] | None = None          # directories made by create(), once it ran
        self._before: set[str] = set()
        if resume:
            if self.path.exists() and not self.path.is_dir():
                raise SDSAudioError(f"cannot resume {self.path}: it is a file, not a run directory")
            if not (self.path / RUN_FILE).is_file():
                raise SDSAudioError(f"nothing to resume in {self.path}: it has no {RUN_FILE}")
            record = self.read()
            if record.get("status") == "done":
                raise SDSAudioError(f"the run in {self.path} is already finished; start a new one with another -o")
            self._before = {p.name for p in self.path.iterdir()}
            return
        check_output_dir(self.path)
        if self.path.is_dir() and any(self.path.iterdir()):
            self._before = {p.name for p in self.path.iterdir()}
            if not overwrite:
                raise SDSAudioError(self._occupied_advice(resumable))

    def _occupied_advice(self, resumable: bool) -> str:
        status = None
        if (self.path / RUN_FILE).is_file():
            try:
                status = self.read().get("status")
            except SDSAudioError:
                status = None
        if status in UNFINISHED and resumable:
            return (f"{self.path} holds an unfinished run ({status}); continue it with --resume {self.path}, or "
                    "pass --overwrite to start over")
        advice = f", or --resume {self.path} to continue an interrupted run" if resumable else ""
        return f"{self.path} exists and is not empty; pass --overwrite to replace its run files" + advice

    def file(self, name: str) -> Path:
        return self.path / name

    def create(self) -> None:
        """Make the directory (and its parents); remove temporary files a killed run left. Idempotent."""
        if self._created is not None:
            return
        created = missing_dirs(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SDSAudioError(f"cannot create {self.path}: {exc.strerror or exc}", exit_code=1) from exc
        self._created = created
        for entry in self.path.iterdir():
            match = _TEMP_FILE.match(entry.name)
            if match and entry.is_file() and (match["suffix"] or "") == Path(match["name"]).suffix:
                entry.unlink(missing_ok=True)
                self._before.discard(entry.name)

    def read(self) -> dict[str, Any]:
        """The run record (``run.json``)."""
        return _read_record(self.path / RUN_FILE)

    def write(self, record: dict[str, Any]) -> None:
        """Write ``run.json`` (adds the format tag, command line, versions and creation time)."""
        self.create()
        record.setdefault("created_utc", utc_now())
        full = {"format": RUN_FORMAT, "command": [Path(sys.argv[0]).name, *sys.argv[1:]], "versions": versions()}
        full.update(record)
        write_json_atomic(self.path / RUN_FILE, full)

    def fail(self, record: dict[str, Any], exc: BaseException) -> None:
        """Record a failed run: ``status`` ``"failed"`` and the error's one-line text (best effort)."""
        from .user_errors import as_user_error

        if self._created is None:            # nothing was written yet
            return
        user = as_user_error(exc)
        record.update(status="failed", error=str(user) if user is not None else f"{type(exc).__name__}: {exc}")
        try:
            self.write(record)
        except (SDSAudioError, OSError):
            pass

    @contextlib.contextmanager
    def guard(self, record: dict[str, Any], *, keep_interrupted: bool = True) -> Iterator[None]:
        """Within: Ctrl-C / SIGTERM record ``"interrupted"`` (or, unless ``keep_interrupted``, discard the run),
        any other exception records ``"failed"``; the exception is re-raised either way."""
        try:
            yield
        except KeyboardInterrupt:
            if keep_interrupted:
                record["status"] = "interrupted"
                self.write(record)
            else:
                self.discard()
            raise
        except Exception as exc:
            self.fail(record, exc)
            raise

    def discard(self) -> None:
        """Remove the files this run added (not those that were there before) and the directories it made."""
        if self._created is None:
            return
        if self.path.is_dir():
            for entry in self.path.iterdir():
                if entry.name not in self._before and entry.is_file():
                    entry.unlink(missing_ok=True)
        remove_created_dirs(self._created)
