"""Whole-file replacement: a reader sees the old file or the new one, never half of one.

A run directory is read while it is written (by the app, by other nodes, by colleagues), so every
file that is rewritten rather than appended goes through :func:`atomic_write_bytes`.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, mode: int | None = None, fsync: bool = True) -> Path:
    """Write ``data`` to a hidden temporary file beside ``path``, then rename it over ``path``.

    ``mode``: the file's permission bits exactly; ``None`` gives what ``open()`` would (0666 less
    the umask), so a folder shared through a group umask stays shared. ``fsync``: make the bytes
    durable before the rename, so a crash leaves the old file rather than an empty new one.
    """
    path = Path(path)
    # A name of our own, created exclusively: a stale or planted temporary file is never written through.
    temp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if mode is not None else 0o666)
    try:
        try:
            if mode is not None:
                os.fchmod(fd, mode)  # exact, whatever the umask takes away
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str, mode: int | None = None, fsync: bool = True) -> Path:
    """:func:`atomic_write_bytes` of ``text`` in UTF-8."""
    return atomic_write_bytes(path, text.encode("utf-8"), mode, fsync)
