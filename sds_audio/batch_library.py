"""A preset library's directory: its index, its run directories and its DX7 banks.

Layout (see :mod:`sds_audio.batch`, which builds libraries)::

    LIB/library.json      format, synth, options, one row per run (:class:`Row`)
    LIB/library.csv       the same rows as CSV (:data:`CSV_COLUMNS`)
    LIB/runs/NAME/        one finished run directory each
    LIB/bank_NN.syx       DX7 32-voice banks of the runs' voices

Only the driver process writes here. Index files are replaced atomically; a run directory is
written beside its final name and renamed into place, so a directory under ``runs/`` whose
``run.json`` says ``done`` is a finished run, whatever the index says (:func:`plan` trusts the
directories over the index).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .atomic import write_json_atomic, write_text_atomic
from .errors import SDSAudioError

LIBRARY_FILE = "library.json"
LIBRARY_CSV = "library.csv"
LIBRARY_FORMAT = "sds-audio-library"
RUNS_DIR = "runs"
LOCK_FILE = ".library.lock"
CSV_COLUMNS = ("prompt", "seed", "synth", "status", "judge_initial", "judge_final", "wall_s", "attempts", "path",
               "bank", "error")


def run_name(prompt: str, seed: int) -> str:
    """The run directory's name: a readable slug, a hash of the exact prompt (slugs can collide), the seed."""
    slug = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha1(prompt.encode("utf-8")).hexdigest()[:8]
    return f"{slug}-{digest}-seed{seed}" if slug else f"{digest}-seed{seed}"


@dataclass
class Row:
    """One run of the library, as the index records it."""

    prompt: str
    seed: int
    synth: str
    status: str = "pending"              # pending | done | failed
    judge_initial: float | None = None   # judge score of the kept restart before / after optimisation
    judge_final: float | None = None
    wall_s: float | None = None          # the successful attempt's time in its worker (model loading included)
    attempts: int = 0                    # over every command that worked on this library
    path: str = ""                       # relative to the library directory
    bank: str = ""                       # the run's DX7 voice in the library's banks: "bank_01.syx:5"
    error: str = ""
    traceback: str = ""

    @property
    def key(self) -> tuple[str, int]:
        return self.prompt, self.seed


def read_index(lib: Path) -> dict[str, Any] | None:
    """The library's index (``library.json``), None where there is none; SDSAudioError if it is damaged."""
    path = lib / LIBRARY_FILE
    if not path.is_file():
        return None
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SDSAudioError(f"cannot read {path}: {exc}; move it away to rebuild the index") from exc
    if not isinstance(index, dict) or index.get("format") != LIBRARY_FORMAT or not isinstance(index.get("runs"), list):
        raise SDSAudioError(f"{path} is not an sds-audio library index")
    return index


def write_index(lib: Path, synth: str, options: dict[str, Any], rows: list[Row]) -> None:
    """Write ``library.json`` and ``library.csv`` (each atomically)."""
    counts = {s: sum(r.status == s for r in rows) for s in ("done", "failed", "pending")}
    write_json_atomic(lib / LIBRARY_FILE, {"format": LIBRARY_FORMAT, "version": 1, "synth": synth,
                                           "options": options, "counts": counts,
                                           "runs": [dataclasses.asdict(r) for r in rows]})
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(["" if getattr(row, c) is None else getattr(row, c) for c in CSV_COLUMNS])
    write_text_atomic(lib / LIBRARY_CSV, buffer.getvalue())


def finished_record(run_dir: Path) -> dict[str, Any] | None:
    """``run.json`` of a finished run directory, else None."""
    try:
        record = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return record if isinstance(record, dict) and record.get("status") == "done" else None


def kept_scores(record: dict[str, Any]) -> tuple[float | None, float | None]:
    """Judge scores (before, after) of the restart a run kept; None without a judge."""
    best = record.get("best_restart", 0)
    initial, final = record.get("judge_initial") or [], record.get("judge_final") or []
    return (initial[best] if best < len(initial) else None), (final[best] if best < len(final) else None)


def install_run(lib: Path, name: str, files: dict[str, bytes], batch_info: dict[str, Any],
                voice_fit: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write a finished run's files into ``lib/runs/name`` atomically (a sibling temp dir, then rename).

    ``run.json`` gets the driver's command line, ``batch`` (library, runner, attempt, host,
    wall_s, cpu_s: the worker process's CPU time for the run) and, for a fitted voice,
    ``dx7_voice`` (how it was fitted)."""
    runs = lib / RUNS_DIR
    record = json.loads(files["run.json"].decode("utf-8"))
    record["command"] = [Path(sys.argv[0]).name, *sys.argv[1:]]
    record["batch"] = batch_info
    if voice_fit is not None:
        record["dx7_voice"] = voice_fit
        record["outputs"] = [*record.get("outputs", []), "voice.syx"]
    files = {**files, "run.json": (json.dumps(record, indent=2, allow_nan=False) + "\n").encode("utf-8")}
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=runs))
    try:
        for file_name, data in files.items():
            (tmp / Path(file_name).name).write_bytes(data)
        final = runs / name
        if final.exists():                         # an unfinished leftover of this run: replace it
            old = Path(tempfile.mkdtemp(prefix=f".{name}.old.", dir=runs))
            os.replace(final, old / name)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SDSAudioError(f"cannot write {runs / name}: {exc.strerror or exc}", exit_code=1) from exc
    return record


@contextlib.contextmanager
def library_lock(lib: Path) -> Iterator[None]:
    """Hold an exclusive lock on the library for the command (POSIX; elsewhere, no lock)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lib / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise SDSAudioError(f"another sds-audio batch is writing {lib}; wait for it to finish") from exc
        yield


def check_compatible(index: dict[str, Any] | None, lib: Path, synth: str, options: dict[str, Any]) -> None:
    """SDSAudioError unless an existing library was built with this synth and these options."""
    if index is None:
        return
    if index.get("synth") != synth:
        raise SDSAudioError(f"{lib} is a {index.get('synth')} library; use --synth {index.get('synth')} or another "
                            "-o directory")
    before = index.get("options", {})
    for key in sorted(set(before) | set(options)):
        if before.get(key) != options.get(key):
            raise SDSAudioError(f"{lib} was built with {key}={before.get(key)!r}, this command asks for "
                                f"{key}={options.get(key)!r}; use the library's options or another -o directory")


def plan(lib: Path, index: dict[str, Any] | None, synth: str, prompts: list[str],
         seeds: list[int]) -> tuple[list[Row], list[Row]]:
    """``(every row of the index, the rows this command runs)``; rows of earlier commands are kept.

    The run directories are the truth: a row is done when its directory holds a finished
    ``run.json`` (even if an interrupted command did not record it), else it is not.
    """
    names = {f.name for f in dataclasses.fields(Row)}
    rows: dict[tuple[str, int], Row] = {}
    for entry in (index or {}).get("runs", []):
        try:
            row = Row(**{k: v for k, v in entry.items() if k in names})
            row.path = f"{RUNS_DIR}/{run_name(row.prompt, int(row.seed))}"
        except (TypeError, AttributeError, ValueError) as exc:
            raise SDSAudioError(f"{lib / LIBRARY_FILE} has a damaged run entry ({exc}); move the file away to "
                                "rebuild the index from the run directories") from exc
        rows[row.key] = row
    wanted = {(prompt, seed) for prompt in prompts for seed in seeds}
    for prompt in prompts:
        for seed in seeds:
            rows.setdefault((prompt, seed), Row(prompt, seed, synth, path=f"{RUNS_DIR}/{run_name(prompt, seed)}"))
    for row in rows.values():
        record = finished_record(lib / row.path)
        if record is not None and row.status != "done":
            row.judge_initial, row.judge_final = kept_scores(record)
            row.wall_s = record.get("batch", {}).get("wall_s")
            row.status, row.error, row.traceback = "done", "", ""
        elif record is None and row.status == "done":       # its directory was removed: run it again
            row.status = "pending"
    todo = [row for row in rows.values() if row.status != "done" and row.key in wanted]
    return list(rows.values()), todo


def write_banks(lib: Path, rows: list[Row]) -> list[Path]:
    """DX7 32-voice banks (VMEM) of the finished runs that hold a ``voice.syx``; returns the files.

    dx7 runs always write ``voice.syx``; fm runs do when the library fits voices
    (``voice_fit_steps``). Voices go in index order, 32 per ``bank_NN.syx`` (the last bank padded
    with INIT VOICE); each row's ``bank`` says where its voice is (``"bank_01.syx:5"``). The
    banks are rewritten whole by every command, so they follow the index.
    """
    voiced = [r for r in rows if r.status == "done" and (lib / r.path / "voice.syx").is_file()]
    if not voiced:
        return []
    from .exports.syx import BANK_VOICES, read_voice, write_vmem

    paths = []
    for start in range(0, len(voiced), BANK_VOICES):
        chunk = voiced[start:start + BANK_VOICES]
        path = lib / f"bank_{start // BANK_VOICES + 1:02d}.syx"
        write_vmem(path, [read_voice(lib / r.path / "voice.syx") for r in chunk])
        for number, row in enumerate(chunk, start=1):
            row.bank = f"{path.name}:{number}"
        paths.append(path)
    return paths
