"""The one place where errors from the OS, JSON, text decoding and audio I/O become user errors.

Library code raises :class:`~sds_audio.errors.SDSAudioError` for what it checks
itself. What it does not check comes from below: a path that cannot be
created (``/proc/x``), a folder given where a file was expected, a full disk,
a file in another encoding, a JSON file nested so deeply that the parser
recurses without end. :func:`as_user_error` turns each such exception into an
``SDSAudioError`` whose one-line message names the file and says what to do;
anything else is a bug and is returned as ``None``, so the caller re-raises it
with its traceback. The ``sds-audio`` command applies it to every command
(:func:`sds_audio.cli.main`); :func:`user_errors` does the same for a block of
library code.
"""

from __future__ import annotations

import contextlib
import errno
import json
from typing import Iterator

from .errors import SDSAudioError

#: exit status for failures of the machine rather than of the input (full disk, out of memory)
EXIT_ENVIRONMENT = 1


def _path_of(exc: OSError) -> str:
    names = [str(n) for n in (exc.filename, exc.filename2) if n not in (None, "")]
    return " -> ".join(names)


def from_os_error(exc: OSError) -> SDSAudioError:
    """An ``SDSAudioError`` for an ``OSError``, with advice that fits its ``errno``."""
    path = _path_of(exc)
    at = f" {path}" if path else ""
    code = exc.errno
    if code == errno.ENOENT:
        return SDSAudioError(f"cannot open{at}: no such file or directory; check the path (the folder of an output "
                             "file must exist and be writable)")
    if code in (errno.EACCES, errno.EPERM):
        return SDSAudioError(f"permission denied:{at}; choose a file or folder you may read or write")
    if code == errno.EISDIR:
        return SDSAudioError(f"{path or 'the path'} is a directory; give a file path")
    if code == errno.ENOTDIR:
        return SDSAudioError(f"{path or 'the path'}: a part of the path is a file, not a directory")
    if code == errno.ENOSPC:
        return SDSAudioError(f"cannot write{at}: the disk is full; free some space or write elsewhere",
                             exit_code=EXIT_ENVIRONMENT)
    if code == errno.EROFS:
        return SDSAudioError(f"cannot write{at}: the file system is read-only; write elsewhere")
    if code == errno.ENAMETOOLONG:
        return SDSAudioError("a file name is too long; use a shorter path")
    if code == errno.EEXIST:
        return SDSAudioError(f"{path or 'the path'} already exists; choose another name or pass --overwrite")
    reason = exc.strerror or str(exc) or type(exc).__name__
    return SDSAudioError(f"cannot access{at}: {reason}")


def as_user_error(exc: BaseException) -> SDSAudioError | None:
    """The user-facing error for ``exc``, or ``None`` when ``exc`` is a bug (see the module docstring)."""
    if isinstance(exc, SDSAudioError):
        return exc
    if isinstance(exc, RecursionError):
        return SDSAudioError("the input is nested too deeply to read (a JSON file with thousands of nested "
                             "brackets?); give a well-formed file")
    if isinstance(exc, json.JSONDecodeError):
        return SDSAudioError(f"a file is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}")
    if isinstance(exc, UnicodeError):
        return SDSAudioError(f"a text file or argument is not valid UTF-8 ({exc.reason}); save it as UTF-8 text")
    if isinstance(exc, OSError):
        return from_os_error(exc)
    if isinstance(exc, MemoryError):
        return SDSAudioError("out of memory: use a shorter input or fewer restarts / steps per batch",
                             exit_code=EXIT_ENVIRONMENT)
    module = type(exc).__module__ or ""
    if module.startswith("soundfile"):        # LibsndfileError / SoundFileError: a file libsndfile cannot handle
        return SDSAudioError(f"audio file error: {exc}; use WAV, FLAC or OGG (any format libsndfile reads)")
    if type(exc).__name__ == "OutOfMemoryError" and module.startswith("torch"):
        return SDSAudioError("out of GPU memory: use a shorter input, fewer restarts, or --device cpu",
                             exit_code=EXIT_ENVIRONMENT)
    return None


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Within: every exception :func:`as_user_error` knows is re-raised as its ``SDSAudioError``."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - translated or re-raised unchanged
        translated = as_user_error(exc)
        if translated is None or translated is exc:
            raise
        raise translated from exc
