"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every file resbone writes (checkpoints, converted weights, ONNX graphs, metrics, drawings, data sets) goes
through `atomic_write` (a file handle) or `atomic_path` (a path, for writers that want a name): the data
goes to `<path>.tmp<pid>[suffix]` in the same folder, is fsync'ed, and os.replace moves it over `path`;
on any failure (an exception, a full disk) the temporary file is removed and `path` is left as it was.
A writer killed outright (SIGKILL) cannot clean up: `sweep_stale_temp_files` removes the temporary
files of writers that are no longer running. Reference tests: tests/utils/test_files.py.
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import IO, Iterator

__all__ = ["atomic_path", "atomic_write", "sweep_stale_temp_files", "temp_path"]

# `<name>.tmp<pid>` with an optional suffix some writers need to pick a format (`.png`)
_TEMP_NAME = re.compile(r"\.tmp(\d+)(\.[A-Za-z0-9]{1,8})?$")


def temp_path(path: str | os.PathLike, suffix: str = "") -> str:
    """The temporary name this process writes `path` under."""
    return f"{os.fspath(path)}.tmp{os.getpid()}{suffix}"


def _fsync_folder(folder: str) -> None:
    # the rename itself is durable only once the folder's entry is on disk (POSIX); Windows has no O_DIRECTORY
    try:
        descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path next to `path`; when the block ends normally, move the file written there
    over `path` (fsync first). On an exception nothing of the attempt is left behind."""
    path = os.fspath(path)
    tmp = temp_path(path, suffix)
    try:
        yield tmp
        if not os.path.isfile(tmp):
            raise FileNotFoundError(f"nothing was written to {tmp} for {path}")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_folder(os.path.dirname(os.path.abspath(path)))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", *, suffix: str = "",
                 encoding: str | None = None) -> Iterator[IO]:
    """`with atomic_write(path, "w") as handle: ...` writes `path` all at once or not at all."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' (text) or 'wb' (binary), got {mode!r}")
    with atomic_path(path, suffix=suffix) as tmp:
        with open(tmp, mode, encoding=encoding if mode == "w" else None) as handle:
            yield handle
            handle.flush()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def sweep_stale_temp_files(folder: str | os.PathLike) -> list[str]:
    """Remove `*.tmp<pid>` files in `folder` whose writer (pid on this machine) is no longer running;
    returns the removed paths. Files of running writers, and of this process, are kept."""
    folder = os.fspath(folder)
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in sorted(os.listdir(folder)):
        match = _TEMP_NAME.search(name)
        path = os.path.join(folder, name)
        if match is None or not os.path.isfile(path):
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _running(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    return removed
