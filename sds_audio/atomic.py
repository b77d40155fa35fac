"""Atomic file writes: write to a temporary file beside the target, then rename.

A crash, Ctrl-C or a full disk mid-write leaves either the old file or no
file, never half of a new one. ``os.replace`` is atomic on POSIX and Windows
when source and target are on the same filesystem, which a sibling temp file
guarantees.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import SDSAudioError


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path; on success rename it onto ``target``, on failure delete it.

    ``suffix`` defaults to the target's suffix (some writers pick the format
    from it). ``OSError`` from a full disk or a missing directory becomes an
    :class:`SDSAudioError` naming the target.
    """
    target = Path(target)
    if not target.parent.exists():
        raise SDSAudioError(f"cannot write {target}: directory {target.parent} does not exist")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix if suffix is not None else target.suffix,
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes the file owner-only; give it the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
        raise SDSAudioError(f"cannot write {target}: {reason}", exit_code=1) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(target: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (UTF-8)."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(target: str | os.PathLike, data: Any) -> None:
    """Write pretty-printed JSON atomically (NaN / inf refused: JSON has no such numbers)."""
    try:
        text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise SDSAudioError(f"cannot write {target}: data holds NaN or infinity ({exc})") from exc
    write_text_atomic(target, text)
