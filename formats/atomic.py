"""Write-to-temp-then-rename helpers shared by the archive writer and the output sinks.

A file only ever appears under its final name complete: it is written to a hidden temp file in the
same directory (so ``os.replace`` is a same-filesystem rename) and renamed after an fsync. Temp files are
named ``.{name}.tmp-{pid}-{random}``, so one left behind by a killed process (``kill -9``) is recognisable,
and the next write to the same output removes it once its process is gone.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
from contextlib import contextmanager

from bbarc.errors import OutputError, UsageError

_TEMP_SUFFIX = re.compile(r"\.tmp-(\d+)-[0-9a-f]{12}$")
FORCE_HINT = "pass --force (API: overwrite=True) to replace it"


def temp_path_for(target: str | os.PathLike) -> str:
    """A fresh hidden temp path next to ``target``, named ``.{name}.tmp-{pid}-{random}``.

    Stale temp files of ``target`` left by dead processes are removed first.
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
    remove_stale_temps(target)
    return os.path.join(directory, f".{name}.tmp-{os.getpid()}-{secrets.token_hex(6)}")


def remove_stale_temps(target: str | os.PathLike) -> list[str]:
    """Remove the temp files of ``target`` whose writing process no longer exists; returns their paths.
    Temp files of live processes are left alone: another bbarc may be writing the same output right now."""
    directory, name = os.path.split(os.path.abspath(os.fspath(target)))
    prefix = f".{name}"
    removed = []
    try:
        entries = os.listdir(directory)
    except OSError:
        return removed
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        match = _TEMP_SUFFIX.fullmatch(entry[len(prefix):])
        if match is None or _process_alive(int(match.group(1))):
            continue
        try:
            os.unlink(os.path.join(directory, entry))
            removed.append(os.path.join(directory, entry))
        except OSError:
            pass  # not ours to fight over; the write itself goes on under a fresh name
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists but not ours, or unknowable: keep the file
    return True


def check_target(target: str | os.PathLike, inputs=(), overwrite: bool = False) -> None:
    """Refuse to write ``target`` when it is one of ``inputs`` (any path to the same file: symlinks and hard
    links included, whatever ``overwrite`` says), or when it exists and ``overwrite`` is false."""
    target = os.fspath(target)
    for source in inputs:
        if source is not None and _same_file(target, os.fspath(source)):
            raise UsageError(f"cannot write {target!r}: it is the input {os.fspath(source)!r}; choose another output")
    if os.path.isdir(target):
        raise UsageError(f"cannot write {target!r}: it is a directory; give a file name")
    if os.path.lexists(target) and not overwrite:
        raise UsageError(f"output {target!r} already exists; {FORCE_HINT}")


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def publish(temp: str, target: str | os.PathLike, overwrite: bool = True) -> None:
    """Atomically rename the finished ``temp`` onto ``target`` and make the rename durable.

    A file replaced keeps its permission bits; a symlink at ``target`` is replaced itself, never the file it
    points to. Without ``overwrite``, a ``target`` that appeared since the writer checked it (``check_target``,
    at the start of a long write) is kept and UsageError raised: the new file is linked into place, which fails
    if the name exists (where the filesystem has no hard links, a last check and a rename)."""
    target = os.fspath(target)
    if not overwrite:
        _publish_new(temp, target)
    else:
        try:
            old = os.lstat(target)
        except FileNotFoundError:
            old = None
        if old is not None and stat.S_ISREG(old.st_mode):
            os.chmod(temp, stat.S_IMODE(old.st_mode) & 0o777)  # never carry set-id bits to new content
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


def _publish_new(temp: str, target: str) -> None:
    appeared = UsageError(f"output {target!r} appeared while bbarc was writing it, and was kept; {FORCE_HINT}")
    try:
        os.link(temp, target)  # atomic, and never replaces: the name exists or it is ours
    except FileExistsError:
        raise appeared from None
    except OSError:  # no hard links here (some FUSE and FAT filesystems): the closest check there is
        if os.path.lexists(target):
            raise appeared from None
        os.replace(temp, target)
    else:
        os.unlink(temp)


def fsync_path(path: str) -> None:
    """fsync a file that has already been closed (h5py keeps no fd we can use)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_quietly(path: str | None) -> None:
    """Remove a temp file during cleanup; a file that is already gone (or cannot be removed) is fine."""
    if path is None:
        return
    try:
        os.unlink(path)
    except OSError:
        pass


_REASONS = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EROFS: "the filesystem is read-only", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied"}


@contextmanager
def output_errors(target: str | os.PathLike):
    """Turn an ``OSError`` while writing ``target`` into an ``OutputError`` that says why in words."""
    try:
        yield
    except OSError as exc:
        raise output_error(target, exc) from None


def output_error(target: str | os.PathLike, exc: OSError) -> OutputError:
    code = exc.errno
    if code is None:  # h5py puts the errno in its message only
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    reason = _REASONS.get(code) or exc.strerror or str(exc)
    return OutputError(f"cannot write {os.fspath(target)!r}: {reason}; nothing was written")
