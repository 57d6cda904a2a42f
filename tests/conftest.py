"""Shared test helpers: deterministic, small, CPU-only."""
from __future__ import annotations

import os

import pytest
import torch

if "OMP_NUM_THREADS" not in os.environ:  # one thread per test process; `make test` runs two processes
    torch.set_num_threads(1)

# A torch bug makes torch.jit.script fail at random in a long test process ("builtin cannot be used as a
# value", seen on a Conv2d's padding tuple in timm's fx + TorchScript test). TorchScript's table of builtins
# is keyed by id(op) and holds no reference. When torch.library defines a second overload of an op it
# already has a packet for (torch.ao's quantized_decomposed ops do at import, which int8 tests trigger), it
# replaces the packet's op and the old one dies. Its id stays in the table, so whatever Python object is
# later allocated at that address reads as a builtin. Keeping the replaced ops alive keeps their ids unique.
REPLACED_OPS: list = []
_refresh_packet = torch._ops._refresh_packet


def _refresh_packet_keeping_the_old_op(packet) -> None:
    REPLACED_OPS.append(packet._op)
    _refresh_packet(packet)


torch._ops._refresh_packet = _refresh_packet_keeping_the_old_op


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test downloads: a checkpoint address that is not cached fails at once with resbone's offline message
    (tests/weights serve their files from 127.0.0.1 and turn this off)."""
    monkeypatch.setenv("RESBONE_OFFLINE", "1")
