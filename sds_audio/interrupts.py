"""Stopping a long run cleanly: SIGINT / SIGTERM take effect between two optimisation steps.

A signal that arrives in the middle of a step would leave a checkpoint of half a
step (the random generators advanced, the parameters not yet updated), and a
resumed run would then drift from the uninterrupted one. So the loops of the
tasks and of training run inside :class:`StepInterrupts`: while it is active, the
first SIGINT (Ctrl-C) or SIGTERM only records itself, and the loop calls
:meth:`StepInterrupts.check` after each finished step, which raises there. The
exception carries ``at_step_boundary = True``; the loop writes its checkpoint
and re-raises. A second signal raises at once (the user insists), and the loop
then keeps the last periodic checkpoint instead.

SIGINT is deferred only while Python's own handler is installed (it raises
:class:`KeyboardInterrupt`); SIGTERM only while :func:`raise_terminated` is its
handler, which the ``sds-audio`` command installs (:func:`terminate_as_exception`),
so that a plain ``kill`` unwinds the run like Ctrl-C does. A host application
that set its own handlers keeps them. Handlers can only be changed from the main
thread; elsewhere (a UI worker thread) the context does nothing.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as an exception (a :class:`KeyboardInterrupt`, so every cleanup path runs)."""


def raise_terminated(signum: int, frame: Any) -> None:
    """SIGTERM handler: raise :class:`Terminated`."""
    raise Terminated()


@contextlib.contextmanager
def terminate_as_exception() -> Iterator[None]:
    """Within: SIGTERM raises :class:`Terminated` (main thread only); the old handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _exception_for(signum: int) -> KeyboardInterrupt:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


class StepInterrupts:
    """Context manager: defer SIGINT / SIGTERM to the next :meth:`check` (see the module docstring).

    Example::

        stop = StepInterrupts()
        try:
            for step in stop.steps(range(start, steps)):   # checks after each step
                ...                                         # one whole step
        except KeyboardInterrupt as exc:
            if at_step_boundary(exc):
                ...                                         # write the checkpoint
            raise
        finally:
            stop.restore()

    ``with StepInterrupts() as stop:`` (calling ``stop.check()`` at the step ends) does the same.
    """

    def __init__(self) -> None:
        self.pending: int | None = None
        self._saved: dict[int, Any] = {}

    def __enter__(self) -> "StepInterrupts":
        return self.install()

    def install(self) -> "StepInterrupts":
        """Install the deferring handlers (where the defaults described above are in place)."""
        if threading.current_thread() is not threading.main_thread() or self._saved:
            return self
        for signum, expected in ((signal.SIGINT, signal.default_int_handler), (signal.SIGTERM, raise_terminated)):
            if signal.getsignal(signum) is expected:
                self._saved[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.restore()

    def restore(self) -> None:
        """Put the handlers found on entry back (idempotent)."""
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)
        self._saved.clear()

    def steps(self, iterable: Iterable[T], on_stop: Callable[[T], None] | None = None) -> Iterator[T]:
        """Yield the items with the handlers installed, calling :meth:`check` after each finished step.

        ``on_stop(item)``, when given, runs before the deferred interrupt is raised after ``item``'s
        step (write the checkpoint there). The handlers are restored when the loop ends; call
        :meth:`restore` in a ``finally`` clause as well where the loop body can raise.
        """
        self.install()
        try:
            for item in iterable:
                yield item
                if self.pending is not None and on_stop is not None:
                    on_stop(item)
                self.check()
        finally:
            self.restore()

    def _handle(self, signum: int, frame: Any) -> None:
        if self.pending is not None:            # a second signal: stop now, mid-step
            raise _exception_for(signum)
        self.pending = signum

    def check(self) -> None:
        """Raise the deferred interrupt, marked ``at_step_boundary``, if a signal came since the last call."""
        if self.pending is None:
            return
        exc = _exception_for(self.pending)
        self.pending = None
        exc.at_step_boundary = True             # type: ignore[attr-defined]
        raise exc


def at_step_boundary(exc: BaseException) -> bool:
    """Whether an interrupt was raised by :meth:`StepInterrupts.check` (the state is that of a whole step)."""
    return bool(getattr(exc, "at_step_boundary", False))
