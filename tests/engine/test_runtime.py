"""Intra-op threads that fit the machine: the cores this process may use (sched_getaffinity) shared among
torchrun's local processes, unless --threads or OMP_NUM_THREADS says otherwise; hand-computed cases."""
from __future__ import annotations

import logging
import os

import pytest
import torch

from resbone.engine import runtime
from resbone.engine.runtime import choose_threads, setup_threads


@pytest.fixture
def machine(monkeypatch):
    """A machine with `cores` usable cores and `local_world` torchrun processes, nothing set by the user."""
    def make(cores: int, local_world: int | None = None, omp: str | None = None):
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
        if local_world is not None:
            monkeypatch.setenv("LOCAL_WORLD_SIZE", str(local_world))
        if omp is not None:
            monkeypatch.setenv("OMP_NUM_THREADS", omp)
    return make


@pytest.mark.parametrize("cores, local_world, expected", [
    (2, None, 2),    # the project's machine, one process
    (16, 4, 4),      # torchrun --nproc_per_node 4 on 16 cores
    (16, 3, 5),      # 16 // 3: the remainder stays idle rather than oversubscribe
    (2, 4, 1),       # more processes than cores: at least one thread each
    (8, 1, 8),
])
def test_cores_are_shared_among_local_processes(machine, cores, local_world, expected):
    machine(cores, local_world)
    choice = choose_threads()
    assert (choice.threads, choice.cores, choice.processes) == (expected, cores, local_world or 1)
    assert str(choice).startswith(f"using {expected} intra-op threads ({cores} cores available, ")


def test_omp_num_threads_and_the_threads_option_win(machine):
    machine(16, 4, omp="3")
    assert choose_threads().threads == 3 and choose_threads().source == "OMP_NUM_THREADS"
    assert choose_threads(7).threads == 7 and "set by --threads" in str(choose_threads(7))


@pytest.mark.parametrize("threads, env, message", [
    (0, {}, "--threads must be a whole number >= 1, got 0"),
    (None, {"OMP_NUM_THREADS": "two"}, "$OMP_NUM_THREADS must be a whole number >= 1, got 'two'"),
    (None, {"LOCAL_WORLD_SIZE": "-1"}, "$LOCAL_WORLD_SIZE must be a whole number >= 1, got '-1'"),
])
def test_bad_thread_counts_are_named(machine, monkeypatch, threads, env, message):
    machine(4)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValueError, match=message.replace("$", r"\$")):
        choose_threads(threads)


def test_setup_threads_applies_and_logs_the_choice(machine, caplog):
    machine(6, 2)
    before = torch.get_num_threads()
    runtime.logger.propagate = True  # setup_logging turns propagation off; caplog listens at the root
    try:
        with caplog.at_level(logging.INFO, logger="resbone"):
            setup_threads()
        assert torch.get_num_threads() == 3
        assert "using 3 intra-op threads (6 cores available, 2 processes; OMP_WAIT_POLICY " in caplog.text
    finally:
        torch.set_num_threads(before)
        runtime.logger.propagate = False
