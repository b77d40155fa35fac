"""Preset libraries: many (prompt, seed) prompt-to-preset runs -> one library directory with an index.

``build_library(prompts_file, lib_dir, synth, seeds, options)`` is what ``sds-audio batch`` runs.
Each (prompt, seed) is one whole :func:`~sds_audio.jobs.prompt_to_preset` run, executed by a
worker (a local process from :mod:`sds_audio.batch_pool`, or a Ray task from
:mod:`sds_audio.batch_ray`) in a temporary directory; the worker sends the run's files back
and the driver alone writes the library::

    LIB/library.json      the index: format, synth, options, one row per run
    LIB/library.csv       the same rows as CSV (prompt, seed, synth, status, judge scores, wall time,
                          attempts, path, error)
    LIB/runs/NAME/        one run directory (sound.wav, preset.json, report.png, run.json, ...)
    LIB/bank_NN.syx       DX7 32-voice banks of the runs' voices (see :func:`~sds_audio.batch_library.write_banks`)

A run directory is moved into place complete (written beside its final name, then renamed),
so ``LIB/runs/NAME/run.json`` with ``status: done`` means the run is finished. A rerun of the
same command skips finished runs and retries the others; a run that fails (an exception, or a
worker process that dies) is retried up to ``retries`` more times in one command and then
recorded as ``failed`` with its error. A user error inside a run (an
:class:`~sds_audio.errors.SDSAudioError`, e.g. a duration the prior cannot make) is recorded
without retrying, and stops the command when no run of it has finished yet: every run would
fail the same way. The index files are rewritten atomically as runs
finish. A library keeps one synth and one set of job options (a rerun with others is refused).

The prompts file is UTF-8 text, one prompt per line; blank lines and lines starting with
``#`` are skipped.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
import tempfile
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .batch_library import (LIBRARY_CSV, LIBRARY_FILE, RUNS_DIR, Row, check_compatible, install_run, kept_scores,
                            library_lock, plan, read_index, run_name, write_banks, write_index)
from .errors import SDSAudioError

# JobOptions fields that do not change a run's result, so may differ between reruns of a library
RUN_ONLY_OPTIONS = ("seed", "device", "progress")
INDEX_INTERVAL_S = 2.0


# -- inputs -----------------------------------------------------------------------------------
def read_prompts(path: str | Path) -> list[str]:
    """The prompts of a prompts file, in order (see the module docstring for the format)."""
    path = Path(path)
    if path.is_dir():
        raise SDSAudioError(f"{path} is a directory; give a text file with one prompt per line")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise SDSAudioError(f"prompts file {path} does not exist") from exc
    except OSError as exc:
        raise SDSAudioError(f"cannot read prompts file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise SDSAudioError(f"prompts file {path} is not UTF-8 text; save it as UTF-8, one prompt per line") from exc
    prompts: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        prompt = line.strip()
        if not prompt or prompt.startswith("#"):
            continue
        if prompt in first_line:
            raise SDSAudioError(f"prompt {prompt!r} is on lines {first_line[prompt]} and {number} of {path}; give "
                                "each prompt once (use --seeds for several runs of one prompt)")
        first_line[prompt] = number
        prompts.append(prompt)
    if not prompts:
        raise SDSAudioError(f"prompts file {path} holds no prompt; write one prompt per line")
    return prompts


def parse_seeds(text: str) -> list[int]:
    """``"0,1,5"`` or ``"0-3"`` (inclusive) or a mix -> distinct seeds, in order."""
    from .validation import MAX_SEED

    seeds: list[int] = []
    seen: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not match:
            raise SDSAudioError(f"--seeds {text!r}: {part!r} is not a seed; give non-negative integers or ranges, "
                                "e.g. --seeds 0,1 or --seeds 0-3")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low or high > MAX_SEED:
            raise SDSAudioError(f"--seeds {text!r}: range {part!r} must run upwards within 0-{MAX_SEED}")
        if high - low >= 100_000:
            raise SDSAudioError(f"--seeds {text!r}: range {part!r} holds more than 100000 seeds")
        for seed in range(low, high + 1):
            if seed in seen:
                raise SDSAudioError(f"--seeds {text!r}: seed {seed} is given twice")
            seen.add(seed)
            seeds.append(seed)
    return seeds


def library_options(options: Any) -> dict[str, Any]:
    """The job options that define a library's runs (all but :data:`RUN_ONLY_OPTIONS`)."""
    return {k: v for k, v in dataclasses.asdict(options).items() if k not in RUN_ONLY_OPTIONS}


def check_options(synth: str, options: Any, prompts: list[str], *, local: bool) -> None:
    """Validate the synth type, job options and prompts before anything is created (SDSAudioError).

    ``local``: the runs use this machine, so ``options.device`` must exist here (Ray workers may
    have devices the driver lacks).
    """
    from . import validation as v
    from .jobs import check_synth_type

    check_synth_type(synth)
    for prompt in prompts:
        v.check_prompt(prompt)
    v.check_prior_name(options.prior)
    options = options.for_synth(synth)
    v.check_int(options.steps, "--steps", 1, v.MAX_STEPS)
    v.check_int(options.restarts, "--restarts", 1, v.MAX_RESTARTS)
    v.check_int(options.denoise_steps, "--denoise-steps", 1, v.MAX_DENOISE_STEPS)
    v.check_float(options.duration_s, "--duration-s", 0.0, v.MAX_SYNTH_DURATION_S, lo_open=True)
    v.check_float(options.lr, "--lr", 0.0, 10.0, lo_open=True)
    v.check_float(options.guidance_scale, "--cfg", 0.0, v.MAX_GUIDANCE)
    if options.negative_prompt is not None:
        v.check_prompt(options.negative_prompt, "negative prompt", "muffled, noisy")
    if local:
        v.resolve_device(options.device)


# -- the work of one run (runs in a worker) ---------------------------------------------------
def _inject_fault(task: dict[str, Any]) -> None:
    """Test hook: ``task["fault"] = {"mode": "raise" | "exit" | "user", "attempts": k}`` fails the first ``k``
    attempts: ``raise`` with a RuntimeError, ``exit`` by ending the worker process, ``user`` with an SDSAudioError."""
    fault = task.get("fault")
    if not fault or task["attempt"] > fault.get("attempts", 1):
        return
    if fault["mode"] == "exit":
        os._exit(3)                          # a worker process dying mid-run
    if fault["mode"] == "user":
        raise SDSAudioError(f"injected user error (attempt {task['attempt']})")
    raise RuntimeError(f"injected failure (attempt {task['attempt']})")


def _fit_voice(run_dir: Path, seed: int, steps: int) -> dict[str, Any]:
    """Fit a DX7 voice to the run's FM preset (:func:`~sds_audio.exports.dx7_fit.preset_to_voice`);
    write ``voice.syx``. Runs in the worker, as it is an optimisation of its own."""
    from .exports.dx7_fit import default_voice_name, preset_to_voice
    from .exports.syx import write_vced
    from .presets import load_preset

    preset = load_preset(run_dir / "preset.json")
    export = preset_to_voice(preset, default_voice_name(preset, run_dir.name), steps=steps, seed=seed)
    write_vced(run_dir / "voice.syx", export.voice)
    return {"method": export.method, "key": export.key, "steps": steps, "distance_initial": export.distance_initial,
            "distance_final": export.distance_final, "distance_exported": export.distance_exported}


def execute(task: dict[str, Any]) -> dict[str, Any]:
    """Run one (prompt, seed) in a temporary directory; return its files (or the error) to the driver.

    ``task``: ``{"synth", "prompt", "seed", "options": JobOptions fields, "attempt", "fault",
    "voice_fit_steps"}`` (``voice_fit_steps`` > 0: an fm run also fits a DX7 voice, ``voice.syx``).
    Returns ``{"ok": True, "files": {name: bytes}, "voice_fit", "wall_s", "cpu_s", "host"}`` or
    ``{"ok": False, "error": one line, "traceback", "wall_s", "host"}``. One torch thread.
    """
    t0, cpu0 = time.perf_counter(), time.process_time()
    host = socket.gethostname()
    try:
        _inject_fault(task)
        import torch

        from .jobs import JobOptions, prompt_to_preset

        torch.set_num_threads(1)
        options = JobOptions(**{**task["options"], "seed": task["seed"], "progress": False})
        with tempfile.TemporaryDirectory(prefix="sds-audio-run-") as tmp:
            out = Path(tmp) / "run"
            prompt_to_preset(task["synth"], task["prompt"], out, options)
            fit_steps = task.get("voice_fit_steps", 0)
            voice_fit = _fit_voice(out, task["seed"], fit_steps) if task["synth"] == "fm" and fit_steps else None
            files = {p.name: p.read_bytes() for p in sorted(out.iterdir())
                     if p.is_file() and not p.name.startswith(".") and p.suffix != ".pt"}
        return {"ok": True, "files": files, "voice_fit": voice_fit, "wall_s": round(time.perf_counter() - t0, 3),
                "cpu_s": round(time.process_time() - cpu0, 3), "host": host}
    except SDSAudioError as exc:     # a user error (options the prior cannot take, missing weights): not retried
        return {"ok": False, "error": " ".join(str(exc).split())[:500], "user_error": True,
                "exit_code": exc.exit_code, "wall_s": round(time.perf_counter() - t0, 3), "host": host}
    except Exception as exc:  # noqa: BLE001 - every failure is reported to the driver, which records it
        return {"ok": False, "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500],
                "traceback": traceback.format_exc(limit=8), "wall_s": round(time.perf_counter() - t0, 3),
                "host": host}


# -- the driver ---------------------------------------------------------------------------------
@dataclass
class LibrarySummary:
    """What :func:`build_library` did. ``rows``: the whole index after the command."""

    lib_dir: Path
    rows: list[Row]
    n_run: int = 0          # runs finished by this command
    n_skipped: int = 0      # runs already finished before it
    n_failed: int = 0       # runs that failed every attempt in this command
    seconds: float = 0.0
    banks: list[Path] = field(default_factory=list)


def _settle(lib: Path, row: Row, task: dict[str, Any], outcome: dict[str, Any], retries: int,
            runner_name: str) -> dict[str, Any] | None:
    """Record one attempt's outcome in ``row`` (installing a finished run); return the retry task, if any."""
    row.attempts += 1
    if outcome["ok"]:
        info = {"library": str(lib), "runner": runner_name, "attempt": task["attempt"], "host": outcome["host"],
                "wall_s": outcome["wall_s"], "cpu_s": outcome.get("cpu_s")}
        record = install_run(lib, Path(row.path).name, outcome["files"], info, outcome.get("voice_fit"))
        row.judge_initial, row.judge_final = kept_scores(record)
        row.status, row.wall_s, row.error, row.traceback = "done", outcome["wall_s"], "", ""
        return None
    row.error, row.traceback = outcome["error"], outcome.get("traceback") or ""
    if task["attempt"] <= retries and not outcome.get("user_error"):
        return {**task, "attempt": task["attempt"] + 1}
    row.status = "failed"
    return None


def _check_counts(workers: Any, retries: Any, voice_fit_steps: Any) -> None:
    for value, option, lo, hi in ((workers, "--workers", 1, 4096), (retries, "--retries", 0, 100),
                                  (voice_fit_steps, "--dx7-fit-steps", 0, 100_000)):
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise SDSAudioError(f"{option} must be a whole number from {lo} to {hi}, got {value!r}")


def build_library(prompts_file: str | Path, lib_dir: str | Path, synth: str = "fm", seeds: list[int] | str = "0",
                  options: Any = None, *, workers: int = 1, ray_address: str | None = None,
                  ray_gpus_per_run: float = 0.0, retries: int = 2, voice_fit_steps: int = 0,
                  progress: bool = True, faults: dict[str, dict[str, Any]] | None = None) -> LibrarySummary:
    """Run every (prompt, seed) of ``prompts_file`` x ``seeds`` into the library ``lib_dir``.

    Everything is checked (prompts, seeds, options, the library, the Ray cluster) before
    anything is created.

    Args:
        prompts_file: UTF-8 text, one prompt per line.
        lib_dir: the library directory (created; an existing one must be an sds-audio library or empty).
        synth: synth type (``sds_audio.jobs.SYNTH_TYPES``).
        seeds: list of seeds, or their text form (``"0,1"``, ``"0-3"``).
        options: :class:`~sds_audio.jobs.JobOptions` for every run (its ``seed`` and ``progress`` are ignored).
        workers: local worker processes (one torch thread each); ignored with ``ray_address``.
        ray_address: ``"auto"`` or ``"HOST:PORT"``: run the runs as Ray tasks on that cluster.
        ray_gpus_per_run: GPUs each Ray task asks for (0: CPU).
        retries: extra attempts for a failed run within this command.
        voice_fit_steps: for an fm library, > 0 fits a DX7 voice to each run's preset with this many
            sound-matching steps (in the worker), so the library gets DX7 banks too; dx7 runs always
            have their voice.
        progress: show a progress bar over runs.
        faults: test hook, ``{prompt: {"mode": "raise" | "exit" | "user", "attempts": k}}`` fails that
            prompt's first ``k`` attempts in this command (see ``_inject_fault``).
    """
    from .jobs import JobOptions

    t0 = time.perf_counter()
    options = (options or JobOptions()).for_synth(synth)
    prompts = read_prompts(prompts_file)
    seeds = parse_seeds(seeds) if isinstance(seeds, str) else parse_seeds(",".join(str(int(s)) for s in seeds))
    _check_counts(workers, retries, voice_fit_steps)
    from .validation import check_float

    check_float(ray_gpus_per_run, "--ray-gpus-per-run", 0.0, 1024.0)
    voice_fit_steps = voice_fit_steps if synth == "fm" else 0
    check_options(synth, options, prompts, local=ray_address is None)
    lib = Path(lib_dir)
    if lib.exists() and not lib.is_dir():
        raise SDSAudioError(f"{lib} is a file; give a directory with -o")
    if lib.is_dir() and any(lib.iterdir()) and not (lib / LIBRARY_FILE).is_file() and not (lib / RUNS_DIR).is_dir():
        raise SDSAudioError(f"{lib} is not empty and holds no {LIBRARY_FILE}; give a new or empty directory, or an "
                            "existing library")
    lib_options = {**library_options(options), "voice_fit_steps": voice_fit_steps}
    check_compatible(read_index(lib) if lib.is_dir() else None, lib, synth, lib_options)
    if ray_address is not None:
        from .batch_ray import RayRunner

        runner = RayRunner(ray_address, num_gpus=ray_gpus_per_run)      # connects: an unreachable cluster fails here
    else:
        from .batch_pool import LocalPool

        runner = LocalPool(workers)
    try:
        (lib / RUNS_DIR).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SDSAudioError(f"cannot create {lib}: {exc.strerror or exc}", exit_code=1) from exc

    with library_lock(lib):
        rows, todo = plan(lib, read_index(lib), synth, prompts, seeds)
        wanted = {(p, s) for p in prompts for s in seeds}
        summary = LibrarySummary(lib, rows, n_skipped=sum(r.status == "done" and r.key in wanted for r in rows))
        tasks = [{"synth": synth, "prompt": r.prompt, "seed": r.seed, "options": dataclasses.asdict(options),
                  "attempt": 1, "voice_fit_steps": voice_fit_steps, "fault": (faults or {}).get(r.prompt)}
                 for r in todo]

        def save_index() -> None:
            write_index(lib, synth, lib_options, rows)

        save_index()
        try:
            _run_all(lib, runner, tasks, {r.key: r for r in todo}, retries, summary, save_index, progress)
        finally:
            runner.close()
            save_index()
        summary.banks = write_banks(lib, rows)
        if summary.banks:
            save_index()
    summary.seconds = time.perf_counter() - t0
    return summary


def _run_all(lib: Path, runner: Any, tasks: list[dict[str, Any]], rows: dict[tuple[str, int], Row], retries: int,
             summary: LibrarySummary, save_index: Any, progress: bool) -> None:
    """Keep ``runner`` full until every task is done or has failed its last attempt; the index is
    saved every :data:`INDEX_INTERVAL_S` seconds."""
    from tqdm import tqdm

    queue, in_flight, saved_at = deque(tasks), 0, time.monotonic()
    with tqdm(total=len(tasks), unit="run", disable=not progress, desc=f"library {lib.name}") as bar:
        while queue or in_flight:
            while queue and in_flight < runner.capacity:
                runner.submit(queue.popleft())
                in_flight += 1
            for task, outcome in runner.wait():
                in_flight -= 1
                row = rows[(task["prompt"], task["seed"])]
                retry = _settle(lib, row, task, outcome, retries, runner.name)
                if retry is not None:
                    queue.append(retry)
                    continue
                summary.n_run += row.status == "done"
                summary.n_failed += row.status == "failed"
                if outcome.get("user_error") and summary.n_run == 0:       # every run would fail the same way
                    raise SDSAudioError(f"run {row.prompt!r} seed {row.seed} failed: {row.error}; the command "
                                        "stopped there", exit_code=outcome.get("exit_code", 2))
                bar.set_postfix(done=summary.n_run, failed=summary.n_failed, refresh=False)
                bar.update(1)
            if time.monotonic() - saved_at > INDEX_INTERVAL_S:
                save_index()
                saved_at = time.monotonic()


__all__ = ["LIBRARY_CSV", "LIBRARY_FILE", "LibrarySummary", "Row", "build_library", "check_options", "execute",
           "parse_seeds", "read_prompts", "run_name"]
