"""Where a run executes: its log, its device, its intra-op threads, its place among torchrun's processes.

Anchor: detectron2's `engine/launch.py` + `utils/logger.py` (rank 0 logs to stdout and OUTPUT_DIR/log.txt,
other ranks only warnings; MODEL.DEVICE with a CPU fallback). Threads follow PyTorch's own rule
(`torch.get_num_threads()` defaults to the physical cores) but count only the cores this process may run
on (`os.sched_getaffinity`: taskset, cgroups, Slurm) and share them among the processes torchrun started
on this machine (LOCAL_WORLD_SIZE): N processes x all cores oversubscribes the CPU and every op spins.
Proven by tests/engine/test_runtime.py (hand-computed thread choices) and tests/engine/test_trainer.py.
"""
from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass

import torch

from resbone.engine import distributed as comm

__all__ = ["logger", "is_terminal", "progress_bar",
           "setup_logging", "select_device", "ThreadChoice", "choose_threads", "setup_threads",
           "join_processes", "start_process"]

logger = logging.getLogger("resbone")


class _StdoutHandler(logging.StreamHandler):
    """Writes to sys.stdout as it is at each record (redirect_stdout, pytest's capture), not as it was
    when the first Trainer set the logger up."""

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value) -> None:
        pass


def is_terminal() -> bool:
    """Whether progress may be drawn as a bar: stderr (tqdm's stream) is a terminal. A log file, CI or nohup
    gets lines instead of thousands of carriage-return frames."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def progress_bar(iterable, *, desc: str, enabled: bool = True):
    """`iterable` with a tqdm bar when `enabled` and on a terminal; else `iterable` itself."""
    if not (enabled and is_terminal()):
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True)


def setup_logging(output_dir: str | None = None) -> None:
    """Rank 0 logs to stdout (and OUTPUT_DIR/log.txt); other ranks only warnings."""
    logger.setLevel(logging.INFO if comm.is_main_process() else logging.WARNING)
    logger.propagate = False
    formatter = logging.Formatter("[%(asctime)s] %(message)s", "%H:%M:%S")
    if not any(getattr(h, "_resbone", None) == "stream" for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(formatter)
        handler._resbone = "stream"
        logger.addHandler(handler)
    if output_dir and comm.is_main_process():
        path = os.path.abspath(os.path.join(output_dir, "log.txt"))
        for old in [h for h in logger.handlers if getattr(h, "_resbone", None) == "file" and h.baseFilename != path]:
            logger.removeHandler(old)  # an earlier run's log.txt (same process) gets none of this run's lines
            old.close()
        if not any(getattr(h, "baseFilename", None) == path for h in logger.handlers):
            os.makedirs(output_dir, exist_ok=True)
            handler = logging.FileHandler(path)
            handler.setFormatter(formatter)
            handler._resbone = "file"
            logger.addHandler(handler)


def select_device(cfg) -> torch.device:
    """MODEL.DEVICE; FCOS's default 'cuda' falls back to the CPU (with a note) when there is no GPU."""
    name = str(cfg.MODEL.DEVICE)
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            logger.info("MODEL.DEVICE is %r but no GPU is available: running on the CPU", name)
            return torch.device("cpu")
        if comm.get_world_size() > 1:
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device(name)
    if name != "cpu":
        raise ValueError(f"MODEL.DEVICE must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    return torch.device("cpu")


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    cores: int
    processes: int
    source: str  # "--threads", "OMP_NUM_THREADS" or "cores / processes"

    def __str__(self) -> str:
        why = "" if self.source == "cores / processes" else f", set by {self.source}"
        return (f"using {self.threads} intra-op threads ({self.cores} cores available, {self.processes} "
                f"process{'es' if self.processes != 1 else ''}{why}; OMP_WAIT_POLICY "
                f"{os.environ.get('OMP_WAIT_POLICY', 'unset')})")


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def _positive_int(text: str, name: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {text!r}")
    return value


def choose_threads(threads: int | None = None) -> ThreadChoice:
    """The intra-op thread count for this process: `threads` (--threads) if given, else OMP_NUM_THREADS
    if set, else the cores this process may use divided by the processes torchrun started on this machine
    (LOCAL_WORLD_SIZE), at least 1."""
    cores = _available_cores()
    processes = _positive_int(os.environ.get("LOCAL_WORLD_SIZE", "1"), "$LOCAL_WORLD_SIZE")
    if threads is not None:
        return ThreadChoice(_positive_int(threads, "--threads"), cores, processes, "--threads")
    if os.environ.get("OMP_NUM_THREADS", "").strip():
        return ThreadChoice(_positive_int(os.environ["OMP_NUM_THREADS"], "$OMP_NUM_THREADS"), cores, processes,
                            "OMP_NUM_THREADS")
    return ThreadChoice(max(1, cores // processes), cores, processes, "cores / processes")


def setup_threads(threads: int | None = None) -> ThreadChoice:
    """Apply choose_threads(threads) with torch.set_num_threads and log the choice."""
    choice = choose_threads(threads)
    if torch.get_num_threads() != choice.threads:
        torch.set_num_threads(choice.threads)
    logger.info("%s", choice)
    return choice


def join_processes(cfg) -> None:
    """Join torchrun's process group (if any: WORLD_SIZE > 1); a second call does nothing."""
    comm.init_distributed(str(cfg.MODEL.DEVICE) if torch.cuda.is_available() else "cpu")


def start_process(cfg, output_dir: str | None = None, *, threads: int | None = None) -> torch.device:
    """Join torchrun's process group (if any), set up the log and the threads; returns the device."""
    join_processes(cfg)
    setup_logging(output_dir)
    setup_threads(threads)
    return select_device(cfg)
