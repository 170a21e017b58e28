"""Atomic file writes: a crash at any moment leaves the old file or the new one, never a torn mix.

The bytes go to a temporary file beside the target, named .<name>.<host>.<pid>.<random>.tmp, which
is fsynced and then renamed over the target (and the folder fsynced, so the rename is durable too).
An overwritten file keeps its mode; a new one gets what open() would give it under the umask. Each
write first removes the temporaries that killed writes of the same target left behind, but never
those of a live process (a concurrent save) or of another host (a shared folder).
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

_TMP_SUFFIX = ".tmp"
_STALE_UNTAGGED_S = 3600  # a temporary without a pid tag (an older gpunn's) is stale after an hour


def file_path(path: Any, where: str) -> Path:
    """`path` as a Path that names a file (not '', '.' or '..'); errors name `where` and the argument."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{where}: argument 'path' must be a str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if not p.name or p.name in (".", ".."):
        raise ValueError(f"{where}: argument 'path' {os.fspath(path)!r} does not name a file")
    return p


def _tmp_prefix(name: str) -> str:
    return f".{name}."


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: alive, or at least not ours to judge
    return True


def clean_stale_temporaries(path: str | os.PathLike) -> list[str]:
    """Remove temporaries that killed saves of `path` left beside it; returns the removed names.

    A temporary is named .<name>.<host>.<pid>.<random>.tmp; it is stale when that process, on this
    host, is gone. Temporaries of live processes (a concurrent save) and of other hosts (a shared
    folder) are left alone."""
    p = file_path(path, "clean_stale_temporaries")
    parent = p.parent if str(p.parent) else Path(".")
    prefix, host, now = _tmp_prefix(p.name), socket.gethostname(), time.time()
    removed: list[str] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not (entry.name.startswith(prefix) and entry.name.endswith(_TMP_SUFFIX)) or not entry.is_file(
                follow_symlinks=False):
            continue
        parts = entry.name[len(prefix):-len(_TMP_SUFFIX)].rsplit(".", 2)  # host, pid, mkstemp's random part
        try:
            if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
                stale = int(parts[1]) != os.getpid() and not _pid_alive(int(parts[1]))
            else:
                stale = now - entry.stat(follow_symlinks=False).st_mtime > _STALE_UNTAGGED_S
            if stale:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue
    return removed


def _target_mode(p: Path) -> int:
    """An existing file keeps its mode; a new one gets what open() would give it under the umask."""
    try:
        return p.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, data: bytes | bytearray | memoryview) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, then rename it over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn mix; the
    temporaries of earlier killed writes to the same path are removed first."""
    p = file_path(path, "atomic_write")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"atomic_write: argument 'data' must be bytes, bytearray or memoryview, got "
                        f"{type(data).__name__}")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise FileNotFoundError(f"atomic_write: the folder {str(parent)!r} of argument 'path' does not exist")
    if p.is_dir():
        raise IsADirectoryError(f"atomic_write: argument 'path' {str(p)!r} is a folder, not a file")
    clean_stale_temporaries(p)
    mode = _target_mode(p)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f"{_tmp_prefix(p.name)}{socket.gethostname()}.{os.getpid()}.",
                               suffix=_TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable; not every platform lets a folder be opened
        dir_fd = os.open(parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
