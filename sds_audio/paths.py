"""Checks of the paths a command reads and writes, made before any work starts.

Each function raises :class:`~sds_audio.errors.SDSAudioError` with a message
that names the path and says what to do, and leaves nothing behind:
:func:`check_creatable` probes whether a file can be created by creating a
temporary one beside it and deleting it at once.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import SDSAudioError


def nearest_existing(path: Path) -> Path:
    """The deepest ancestor of ``path`` (or ``path`` itself) that exists."""
    current = Path(os.path.abspath(path))
    while not current.exists() and current != current.parent:
        current = current.parent
    return current


def check_creatable(path: str | os.PathLike, what: str = "output") -> None:
    """SDSAudioError unless ``path`` (a file or folder that may not exist yet) can be created.

    The deepest existing ancestor must be a writable directory; it is tested by creating
    and deleting a temporary file there (``os.access`` says yes to root even on ``/proc``).
    """
    path = Path(path)
    base = nearest_existing(path)
    if not base.is_dir():
        raise SDSAudioError(f"cannot create {what} {path}: {base} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sds-audio-probe-", dir=base)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise SDSAudioError(f"cannot create {what} {path}: {base} is not writable ({reason}); choose another "
                            "location") from exc
    os.close(fd)
    os.unlink(probe)


def check_input_file(path: str | os.PathLike | None, what: str, *, option: str | None = None) -> Path:
    """``path`` as a Path if it is an existing regular file; SDSAudioError otherwise."""
    if path is None or str(path) == "":
        raise SDSAudioError(f"give the {what}" + (f" with {option}" if option else ""))
    path = Path(path)
    if path.is_dir():
        raise SDSAudioError(f"{what} {path} is a directory; give a file")
    if not path.exists():
        raise SDSAudioError(f"{what} {path} does not exist")
    if not path.is_file():
        raise SDSAudioError(f"{what} {path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise SDSAudioError(f"{what} {path} is not readable (permission denied)")
    return path


def check_input_dir(path: str | os.PathLike | None, what: str, *, option: str | None = None) -> Path:
    """``path`` as a Path if it is an existing directory; SDSAudioError otherwise."""
    if path is None or str(path) == "":
        raise SDSAudioError(f"give the {what}" + (f" with {option}" if option else ""))
    path = Path(path)
    if path.is_file():
        raise SDSAudioError(f"{what} {path} is a file; give a directory")
    if not path.is_dir():
        raise SDSAudioError(f"{what} {path} does not exist")
    return path


def check_output_file(path: str | os.PathLike, *, overwrite: bool, what: str = "output file") -> Path:
    """``path`` as a Path if a file may be written there (refusing to replace one unless ``overwrite``)."""
    path = Path(path)
    if str(path) == "" or path.name in ("", ".", ".."):
        raise SDSAudioError(f"give a file name for the {what}, e.g. -o sound.wav")
    if path.is_dir():
        raise SDSAudioError(f"{what} {path} is a directory; give a file name, e.g. {path / 'sound.wav'}")
    if path.exists() and not overwrite:
        raise SDSAudioError(f"{path} exists; pass --overwrite to replace it")
    if not path.parent.exists():
        raise SDSAudioError(f"cannot write {path}: directory {path.parent} does not exist")
    check_creatable(path, what)
    return path


def check_output_dir(path: str | os.PathLike | None, *, what: str = "output directory") -> Path:
    """``path`` as a Path if it is, or can become, a directory (whether it may be reused is the caller's rule)."""
    if path is None or str(path) == "":
        raise SDSAudioError(f"give the {what} with -o DIR")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SDSAudioError(f"{what} {path} is a file; pass a directory")
    if not path.exists():
        check_creatable(path, what)
    elif not os.access(path, os.W_OK | os.X_OK):
        raise SDSAudioError(f"{what} {path} is not writable; choose another directory")
    return path


def remove_created_dirs(created: list[Path]) -> None:
    """Remove the directories in ``created`` (deepest first) that are empty; keep the rest."""
    for directory in sorted(created, key=lambda p: len(p.parts), reverse=True):
        try:
            directory.rmdir()
        except OSError:
            pass


def missing_dirs(path: str | os.PathLike) -> list[Path]:
    """The directories that ``mkdir(parents=True)`` of ``path`` would create, outermost first."""
    path = Path(os.path.abspath(path))
    missing = []
    while not path.exists() and path != path.parent:
        missing.append(path)
        path = path.parent
    return list(reversed(missing))


@contextlib.contextmanager
def removing_new_dirs(path: str | os.PathLike) -> Iterator[None]:
    """Within: if the block fails, remove the directories it made on the way to ``path`` that stayed empty."""
    created = missing_dirs(path)
    try:
        yield
    except BaseException:
        remove_created_dirs(created)
        raise
