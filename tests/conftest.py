"""Shared test helpers: deterministic, small, CPU-only."""
from __future__ import annotations

import os

import pytest
import torch

if "OMP_NUM_THREADS" not in os.environ:  # one thread per test process; `make test` runs two processes
    torch.set_num_threads(1)


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test downloads: a checkpoint address that is not cached fails at once with resbone's offline message
    (tests/weights serve their files from 127.0.0.1 and turn this off)."""
    monkeypatch.setenv("RESBONE_OFFLINE", "1")
