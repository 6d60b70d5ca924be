"""Write-to-temp-then-rename helpers shared by the archive writer and the output sinks.

A file only ever appears under its final name complete: it is written to a hidden temp file in the
same directory (so ``os.replace`` is a same-filesystem rename) and renamed after an fsync.
"""

from __future__ import annotations

import os
import secrets

from bbarc.errors import UsageError


def temp_path_for(target: str | os.PathLike) -> str:
    """A fresh hidden temp path next to ``target``, named ``.{name}.tmp-{random}``.

    Raises UsageError when ``target`` cannot be written: directory missing, or ``target`` is a directory.
    """
    target = os.fspath(target)
    directory, name = os.path.split(os.path.abspath(target))
    if not name:
        raise UsageError(f"output path {target!r} names no file; give a file name")
    if not os.path.isdir(directory):
        raise UsageError(f"cannot write {target!r}: directory {directory!r} does not exist; create it first")
    if os.path.isdir(target):
        raise UsageError(f"cannot write {target!r}: it is a directory; give a file name")
    return os.path.join(directory, f".{name}.tmp-{secrets.token_hex(6)}")


def fsync_path(path: str) -> None:
    """fsync a file that has already been closed (h5py and memmaps keep no fd we can use)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(temp: str, target: str | os.PathLike) -> None:
    """Atomically rename the finished ``temp`` onto ``target`` and make the rename durable."""
    target = os.fspath(target)
    os.replace(temp, target)
    # The rename is only durable once the directory entry is on disk; some filesystems refuse
    # fsync on directories, and the data itself is already safe, so failure here is not fatal.
    try:
        fd = os.open(os.path.dirname(os.path.abspath(target)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_quietly(path: str | None) -> None:
    """Remove a temp file during cleanup; a file that is already gone is fine."""
    if path is None:
        return
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
