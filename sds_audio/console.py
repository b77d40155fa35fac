"""How the ``sds-audio`` command talks to the terminal: one line per error, warning or stop.

* :class:`OneLineParser`: argparse, with its errors on one line and a pointer to ``--help``
  (argparse prints the whole usage block first otherwise).
* :func:`one_line_warnings`: warnings print as ``sds-audio: warning: ...`` (no source line,
  no category), for the command only; the library's ``warnings.warn`` calls are unchanged.
* :func:`stopped`: the message and exit status of a run stopped by Ctrl-C (130) or SIGTERM (143).
* :func:`error_line`: an error's text on one line.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from typing import Iterator

from .interrupts import Terminated

PROG = "sds-audio"


class OneLineParser(argparse.ArgumentParser):
    """argparse, with its errors on one line (``sds-audio CMD: error: ... (see sds-audio CMD --help)``)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {error_line(message)} (see {self.prog} --help)\n")


def error_line(text: object) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(str(text).split())


def _format(message, category, filename, lineno, line=None) -> str:
    return f"{PROG}: warning: {error_line(message)}\n"


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Within: warnings print as ``sds-audio: warning: ...`` on one line."""
    before = warnings.formatwarning
    warnings.formatwarning = _format
    try:
        yield
    finally:
        warnings.formatwarning = before


def stopped(exc: KeyboardInterrupt, advice: str) -> int:
    """Print why the run stopped and what to do; return 130 (Ctrl-C) or 143 (SIGTERM)."""
    how = "stopped (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
    print(f"{PROG}: {how}; {advice}", file=sys.stderr)
    return 143 if isinstance(exc, Terminated) else 130
