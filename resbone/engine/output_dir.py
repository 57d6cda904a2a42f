"""One run per OUTPUT_DIR: a fresh run never replaces a finished one unasked, two runs never write into
the same folder at once, and what a killed run left behind is cleaned up.

`claim_output_dir` (rank 0, before anything is written) refuses a folder that holds a run's files unless the
user said --resume or --overwrite, takes OUTPUT_DIR/run.lock (owner pid, host, start time; created with
O_EXCL, so of two runs starting together exactly one gets it), takes over the lock of a run whose process
is gone (with a warning), and removes the temporary files of writers killed mid-write. Detectron2 and FCOS
write into a non-empty OUTPUT_DIR silently; this is resbone's addition. Proven by tests/test_reliability.py.
"""
from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import socket
import time

from resbone.engine.runtime import logger
from resbone.utils.files import atomic_write, process_running, sweep_stale_temp_files

__all__ = ["LOCK_NAME", "RunLock", "claim_output_dir", "run_files"]

LOCK_NAME = "run.lock"
# what a run leaves (log.txt alone is not a run: a run that failed on its config writes only that)
_RUN_PATTERNS = ("model_*.pth", "last_checkpoint", "metrics.jsonl", "eval_results.json", "curves.png")


def run_files(output_dir: str) -> list[str]:
    """The names of a previous run's files in `output_dir`, sorted."""
    found = {os.path.basename(p) for pattern in _RUN_PATTERNS for p in glob.glob(os.path.join(output_dir, pattern))}
    return sorted(found)


class RunLock:
    """OUTPUT_DIR/run.lock held by this process; `release()` (also at exit) removes it if it is still ours."""

    def __init__(self, path: str) -> None:
        self.path = path
        atexit.register(self.release)

    def release(self) -> None:
        owner = _read_owner(self.path)
        if owner is not None and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        atexit.unregister(self.release)


def claim_output_dir(output_dir: str, *, resume: bool = False, overwrite: bool = False) -> RunLock:
    """Lock `output_dir` for this run (see the module docstring); raises ValueError when it is taken or
    holds a run that neither `resume` nor `overwrite` lets this run continue or replace."""
    if resume and overwrite:
        raise ValueError("--resume continues the run in OUTPUT_DIR and --overwrite replaces it: choose one")
    os.makedirs(output_dir, exist_ok=True)
    lock = _take_lock(os.path.join(output_dir, LOCK_NAME))
    try:
        previous = run_files(output_dir)
        if previous and not (resume or overwrite):
            raise ValueError(f"OUTPUT_DIR {output_dir} already holds a run ({', '.join(previous)}); pass --resume "
                             "to continue it, --overwrite to replace it, or choose another OUTPUT_DIR")
        if previous and overwrite:
            for name in previous:
                os.unlink(os.path.join(output_dir, name))
            logger.warning("--overwrite: removed the previous run's %s from %s", ", ".join(previous), output_dir)
        for path in sweep_stale_temp_files(output_dir):
            logger.warning("removed %s, left by a writer that was killed", path)
    except BaseException:
        lock.release()
        raise
    return lock


def _take_lock(path: str) -> RunLock:
    me = dict(pid=os.getpid(), host=socket.gethostname(), started=time.strftime("%Y-%m-%d %H:%M:%S"))
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        owner = _read_owner(path)
        if owner is None:  # empty or cut short: its writer died between creating and writing it
            owner = dict(host=me["host"])
        if owner.get("host") != me["host"] or process_running(owner.get("pid")):
            where = f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started {owner.get('started', '?')}"
            raise ValueError(f"OUTPUT_DIR {os.path.dirname(path)} is in use by another run ({where}); wait for it, "
                             f"choose another OUTPUT_DIR, or remove {path} if that run is gone") from None
        logger.warning("taking over %s from a run that is no longer running (pid %s, started %s)", path,
                       owner.get("pid", "?"), owner.get("started", "?"))
        with atomic_write(path, "w") as handle:
            json.dump(me, handle)
        return RunLock(path)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(me, handle)
    return RunLock(path)


def _read_owner(path: str) -> dict | None:
    try:
        with open(path) as handle:
            owner = json.load(handle)
    except (OSError, ValueError):  # gone, or cut short by a writer killed between create and write
        return None
    return owner if isinstance(owner, dict) else None

