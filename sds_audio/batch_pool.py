"""A pool of local worker processes for :mod:`sds_audio.batch` that survives a worker's death.

:class:`concurrent.futures.ProcessPoolExecutor` marks the whole pool broken when one
worker dies (an out-of-memory kill, a segfault in a native library), failing every run
in flight. Here each worker is a long-lived ``spawn`` process with its own pipe, and the
pool knows which task each worker holds: when a worker dies, only that task comes back
as failed, and the next task starts a fresh worker. Each worker runs one torch thread,
so ``N`` workers use ``N`` cores.

A task is a plain dict (see :func:`sds_audio.batch.execute`); an outcome is the dict
``execute`` returns, or ``{"ok": False, "error": ...}`` for a worker that died.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from .errors import SDSAudioError


READY = "ready"


def _worker_main(conn: Connection) -> None:
    """Worker loop: say :data:`READY`, then receive a task, run it, send its outcome; ``None`` stops it."""
    os.environ["OMP_NUM_THREADS"] = "1"      # before torch is imported in this process
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    from .batch import execute

    torch.set_num_threads(1)
    try:
        conn.send(READY)
        while True:
            task = conn.recv()
            if task is None:
                return
            conn.send(execute(task))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):   # the driver went away or was interrupted
        return


@dataclass
class _Worker:
    process: Any
    conn: Connection
    task: dict[str, Any] | None = None
    started: bool = False          # it said READY: its process came up and imported the library


class LocalPool:
    """``workers`` spawned processes running :func:`sds_audio.batch.execute`.

    ``capacity`` tasks may be in flight at once (one per worker). :meth:`wait` blocks
    until at least one finishes and returns ``[(task, outcome), ...]``.
    """

    name = "local"

    def __init__(self, workers: int):
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.capacity = workers
        self._ctx = multiprocessing.get_context("spawn")
        self._idle: list[_Worker] = []
        self._busy: list[_Worker] = []

    def _start_worker(self) -> _Worker:
        parent, child = self._ctx.Pipe()
        process = self._ctx.Process(target=_worker_main, args=(child,), daemon=True, name="sds-audio-batch")
        process.start()
        child.close()
        return _Worker(process, parent)

    def submit(self, task: dict[str, Any]) -> None:
        """Hand ``task`` to an idle worker (starting one if none is idle)."""
        if len(self._busy) >= self.capacity:
            raise RuntimeError("all workers are busy; wait() first")
        worker = self._idle.pop() if self._idle else self._start_worker()
        try:
            worker.conn.send(task)
        except (BrokenPipeError, OSError):      # no reader: the process is gone
            worker.process.join(timeout=5)
            self._discard(worker)
            if not worker.started:
                raise self._startup_failure(worker) from None
            worker = self._start_worker()           # it died while idle: replace it
            try:
                worker.conn.send(task)
            except (BrokenPipeError, OSError):
                worker.process.join(timeout=5)
                self._discard(worker)
                raise self._startup_failure(worker) from None
        worker.task = task
        self._busy.append(worker)

    @staticmethod
    def _startup_failure(worker: _Worker) -> SDSAudioError:
        return SDSAudioError(f"a worker process exited with code {worker.process.exitcode} before it started; if "
                             "a script runs the library, guard its code with `if __name__ == \"__main__\":` "
                             "(worker processes import it)")

    def wait(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """Block until a busy worker answers or dies; return the finished ``(task, outcome)`` pairs.

        Raises:
            SDSAudioError: a worker process died before it started (e.g. a script that calls
                the library without an ``if __name__ == "__main__":`` guard): every run would fail.
        """
        finished: list[tuple[dict[str, Any], dict[str, Any]]] = []
        while self._busy and not finished:
            ready = set(wait([w.conn for w in self._busy] + [w.process.sentinel for w in self._busy]))
            for worker in [w for w in self._busy if w.conn in ready or w.process.sentinel in ready]:
                outcome = self._receive(worker)
                if isinstance(outcome, str) and outcome == READY:
                    worker.started = True
                    continue
                task, worker.task = worker.task, None
                self._busy.remove(worker)
                if outcome is None:                   # no answer: the process died holding the task
                    worker.process.join(timeout=5)
                    code = worker.process.exitcode
                    self._discard(worker)
                    if not worker.started:
                        raise self._startup_failure(worker)
                    outcome = {"ok": False, "error": f"the worker process died (exit code {code}) while running "
                                                     "this run", "wall_s": None, "host": None}
                else:
                    self._idle.append(worker)
                finished.append((task, outcome))
        return finished

    @staticmethod
    def _receive(worker: _Worker) -> Any:
        """The worker's next message, or None if it has none and its pipe or process is gone."""
        try:
            if worker.conn.poll():
                return worker.conn.recv()
        except (EOFError, OSError):
            pass
        if worker.process.is_alive():
            worker.process.join(timeout=1)            # the sentinel fired: let it finish exiting
        return None

    def _discard(self, worker: _Worker) -> None:
        worker.conn.close()
        if worker.process.is_alive():
            worker.process.terminate()
        worker.process.join(timeout=5)

    def close(self) -> None:
        """Stop idle workers; interrupt busy ones (their tasks are abandoned), so that each cleans up its
        temporary run directory, and terminate any that do not exit within a few seconds."""
        for worker in self._idle:
            try:
                worker.conn.send(None)
            except (BrokenPipeError, OSError):
                pass
        for worker in self._busy:      # after a Ctrl-C in a terminal they have their own SIGINT already
            worker.process.join(timeout=1)
            if worker.process.is_alive() and os.name == "posix":
                try:
                    os.kill(worker.process.pid, signal.SIGINT)
                except ProcessLookupError:
                    pass
        for worker in self._idle + self._busy:
            worker.process.join(timeout=10)
            self._discard(worker)
        self._idle, self._busy = [], []
