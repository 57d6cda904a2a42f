"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every file resbone writes (checkpoints, converted weights, ONNX graphs, metrics, drawings, data sets) goes
through `atomic_write` (a file handle) or `atomic_path` (a path, for writers that want a name): the data
goes to `<path>.tmp<pid>[suffix]` in the same folder, is fsync'ed, and os.replace moves it over `path`;
on any failure (an exception, a full disk) the temporary file is removed and `path` is left as it was.
A writer killed outright (SIGKILL) cannot clean up: `sweep_stale_temp_files` removes the temporary
files of writers that are no longer running. `naming_write_errors` turns a full, read-only or forbidden
disk into one `WriteError` sentence that names the folder and its free space.
Reference tests: tests/utils/test_files.py, tests/test_reliability.py.
"""
from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
from typing import IO, Iterator

__all__ = ["WriteError", "atomic_path", "atomic_write", "free_space", "is_disk_error", "naming_write_errors",
           "process_running", "sweep_stale_temp_files", "temp_path"]

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


def process_running(pid: int) -> bool:
    """Whether process `pid` runs on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
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
        if pid == os.getpid() or process_running(pid):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    return removed


# the faults of the disk rather than of the program: the user can act on them (free space, another folder)
_DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# torch.save's C++ zip writer reports a failed write (a full disk) as a RuntimeError with these words
_TORCH_WRITE_FAILURES = ("unexpected pos", "failed writing", "file write failed")


class WriteError(OSError):
    """A write refused by the disk (full, read-only, not permitted), as one sentence naming the folder."""


def is_disk_error(error: BaseException) -> bool:
    """A write the disk refused (full, read-only, not permitted), not a fault of the program."""
    if isinstance(error, OSError):
        return error.errno in _DISK_ERRNOS
    return isinstance(error, RuntimeError) and any(words in str(error) for words in _TORCH_WRITE_FAILURES)


def free_space(folder: str | os.PathLike) -> str:
    """'1.2 GB free' for the disk holding `folder` (or its nearest existing parent)."""
    folder = os.path.abspath(os.fspath(folder))
    while not os.path.exists(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "free space unknown"
    if free < 1024 ** 2:
        return f"{free / 1024:.1f} KB free"
    if free < 1024 ** 3:
        return f"{free / 1024 ** 2:.1f} MB free"
    return f"{free / 1024 ** 3:.1f} GB free"


@contextlib.contextmanager
def naming_write_errors(folder: str | os.PathLike, what: str = "OUTPUT_DIR") -> Iterator[None]:
    """Inside the block, a write the disk refuses (ENOSPC, EDQUOT, EROFS, EACCES, EPERM, or torch.save's
    RuntimeError for a failed write) becomes a WriteError: `cannot write to OUTPUT_DIR <folder>: <why>
    (<free space>)`; every other exception passes unchanged."""
    try:
        yield
    except WriteError:
        raise
    except (OSError, RuntimeError) as error:
        if not is_disk_error(error):
            raise
        code = getattr(error, "errno", None) or errno.ENOSPC
        why = os.strerror(code) if isinstance(error, OSError) else f"the write failed ({_first_line(error)})"
        name = f" ({error.filename})" if getattr(error, "filename", None) else ""
        hint = ("free some space or choose another" if code in (errno.ENOSPC, errno.EDQUOT)
                else "choose a writable")
        problem = WriteError(f"cannot write to {what} {os.fspath(folder)}{name}: {why} ({free_space(folder)}); "
                             f"{hint} {what}")
        problem.errno = code  # str() stays the sentence (OSError(errno, text) would prefix "[Errno N]")
        raise problem from error


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
