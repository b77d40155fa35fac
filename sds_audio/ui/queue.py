"""The studio's job queue: long runs on one background thread, in order, cancellable.

A web request must not run a prompt-to-preset optimisation itself: it would hold
the request for minutes and could not be stopped. :class:`JobQueue` runs jobs on
its own worker thread, one at a time (a run already uses every core, or the
GPU), in submission order. A job is a function ``work(job)`` that reports
progress with :meth:`Job.report` and calls :meth:`Job.check_cancelled` at its
step boundaries (the task loops' ``on_step`` callbacks do both, see
:mod:`sds_audio.ui.runs`). The page polls :meth:`Job.snapshot`.

Cancelling a queued job drops it before it starts; cancelling a running job sets
its event, and the next :meth:`Job.check_cancelled` raises :class:`JobCancelled`.
That exception is a :class:`KeyboardInterrupt`, so the tasks treat it exactly as
Ctrl-C: the optimisation writes its checkpoint, ``run.json`` says
``"interrupted"``, and ``sds-audio fm --resume DIR`` can continue the run. A
:class:`~sds_audio.errors.SDSAudioError` from a job (a bad input) becomes the
job's error message; any other exception too, with its type, so one failing job
never stops the worker.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import SDSAudioError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class JobCancelled(KeyboardInterrupt):
    """Raised inside a running job at its next step boundary after :meth:`Job.cancel`."""

    at_step_boundary = True    # raised between two whole steps (see sds_audio.interrupts)


@dataclass
class Job:
    """One unit of work and what the page shows of it.

    Attributes:
        id: the queue's sequence number, from 1.
        kind: a short label (``"preset"``, ``"separate"``, ...).
        status: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``.
        progress: the latest :meth:`report` fields (e.g. ``step``, ``steps``, ``loss``).
        result: what ``work`` returned (when ``done``).
        error: one line for the page (when ``failed``).
        submitted_s / started_s / finished_s: ``time.monotonic()`` stamps (None until then).
    """

    id: int
    kind: str
    work: Callable[["Job"], Any]
    status: str = QUEUED
    progress: dict[str, Any] = field(default_factory=dict)
    result: Any = None
    error: str | None = None
    submitted_s: float = field(default_factory=time.monotonic)
    started_s: float | None = None
    finished_s: float | None = None
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def report(self, **fields: Any) -> None:
        """Merge ``fields`` into :attr:`progress` (called from the worker thread)."""
        with self._lock:
            self.progress.update(fields)

    def snapshot(self) -> tuple[str, dict[str, Any]]:
        """``(status, copy of progress)``, consistent with each other."""
        with self._lock:
            return self.status, dict(self.progress)

    def cancel(self) -> None:
        """Ask the job to stop; a queued job never starts, a running one stops at its next step."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise :class:`JobCancelled` if :meth:`cancel` was called (call at step boundaries)."""
        if self._cancel.is_set():
            raise JobCancelled()

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def wait(self, timeout_s: float | None = None) -> bool:
        """Block until the job is finished; False when ``timeout_s`` ran out first."""
        return self._done.wait(timeout_s)

    def _finish(self, status: str, result: Any = None, error: str | None = None) -> None:
        with self._lock:
            self.status, self.result, self.error = status, result, error
            self.finished_s = time.monotonic()
        self._done.set()


class JobQueue:
    """A FIFO of :class:`Job` run by one daemon worker thread.

    Args:
        max_pending: refuse new jobs (with an :class:`SDSAudioError`) while this many wait.
        keep_finished: how many finished jobs stay reachable by :meth:`get` (oldest dropped first).
    """

    def __init__(self, max_pending: int = 16, keep_finished: int = 64):
        self.max_pending = int(max_pending)
        self.keep_finished = int(keep_finished)
        self._jobs: dict[int, Job] = {}
        self._pending: queue.Queue[Job | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._run, name="sds-audio-studio-jobs", daemon=True)
        self._worker.start()

    def submit(self, kind: str, work: Callable[[Job], Any]) -> Job:
        """Queue ``work(job)``; returns the job at once."""
        with self._lock:
            waiting = sum(1 for j in self._jobs.values() if j.status == QUEUED)
            if waiting >= self.max_pending:
                raise SDSAudioError(f"{waiting} jobs are already waiting; try again when one has finished")
            finished = [i for i, j in self._jobs.items() if j.finished]
            for old in finished[:max(0, len(finished) - self.keep_finished)]:
                del self._jobs[old]
            job = Job(id=next(self._ids), kind=kind, work=work)
            self._jobs[job.id] = job
        self._pending.put(job)
        return job

    def get(self, job_id: int | None) -> Job | None:
        """The job with this id (None for an unknown id)."""
        return self._jobs.get(job_id) if job_id is not None else None

    def jobs(self) -> list[Job]:
        """The jobs :meth:`get` still knows, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def cancel(self, job_id: int | None) -> bool:
        """Cancel a job by id; False when there is no such unfinished job."""
        job = self.get(job_id)
        if job is None or job.finished:
            return False
        job.cancel()
        return True

    def position(self, job: Job) -> int:
        """How many queued or running jobs are ahead of ``job`` (0 once it runs)."""
        if job.status != QUEUED:
            return 0
        with self._lock:
            return sum(1 for j in self._jobs.values() if j.id < job.id and not j.finished)

    def close(self, timeout_s: float = 5.0) -> None:
        """Cancel every unfinished job and stop the worker (waits ``timeout_s`` at most)."""
        for job in list(self._jobs.values()):
            job.cancel()
        self._pending.put(None)
        self._worker.join(timeout_s)

    def _run(self) -> None:
        while True:
            job = self._pending.get()
            if job is None:
                return
            if job.cancel_requested:
                job._finish(CANCELLED)
                continue
            with job._lock:
                job.status, job.started_s = RUNNING, time.monotonic()
            try:
                result = job.work(job)
            except KeyboardInterrupt:       # JobCancelled, or a cancelled task's re-raise
                job._finish(CANCELLED)
            except SDSAudioError as exc:
                job._finish(FAILED, error=str(exc))
            except Exception as exc:        # a bug: keep the worker alive, show it, log the traceback
                traceback.print_exc()
                job._finish(FAILED, error=f"{type(exc).__name__}: {exc}")
            else:
                job._finish(DONE, result=result)
