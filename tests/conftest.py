"""Shared test helpers: deterministic, small, CPU-only."""
from __future__ import annotations

import os

import pytest
import torch

if "OMP_NUM_THREADS" not in os.environ:  # one thread per test process; `make test` runs two processes
    torch.set_num_threads(1)

# A torch bug makes torch.jit.script fail at random in a long test process ("builtin cannot be used as a
# value", seen on a Conv2d's padding tuple in timm's fx + TorchScript test). TorchScript's table of builtins
# is keyed by id(op) and holds no reference to the op. torch.library drops ops that the table still names:
# when it defines a second overload of an op it already has a packet for (torch.ao's quantized_decomposed
# ops do at import, which the int8 tests trigger), it replaces the packet's op; when a Library is destroyed,
# it deletes the packets of the ops it defined. The dropped op's id stays in the table, so whatever Python
# object is later allocated at that address reads as a builtin. Keeping dropped ops alive keeps ids unique.
DROPPED_OPS: list = []
_refresh_packet = torch._ops._refresh_packet
_clear_torch_ops_cache = torch.library._clear_torch_ops_cache


def _refresh_packet_keeping_the_old_op(packet) -> None:
    DROPPED_OPS.append(packet._op)
    _refresh_packet(packet)


def _clear_torch_ops_cache_keeping_the_ops(op_defs) -> None:
    for qualname in op_defs:
        namespace, _, name = qualname.partition("::")
        packet = vars(getattr(torch.ops, namespace)).get(name.split(".")[0]) if namespace else None
        if packet is not None:
            DROPPED_OPS.append(packet._op)
    _clear_torch_ops_cache(op_defs)


torch._ops._refresh_packet = _refresh_packet_keeping_the_old_op
torch.library._clear_torch_ops_cache = _clear_torch_ops_cache_keeping_the_ops


@pytest.fixture
def rng() -> torch.Generator:
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test downloads: a checkpoint address that is not cached fails at once with resbone's offline message
    (tests/weights serve their files from 127.0.0.1 and turn this off)."""
    monkeypatch.setenv("RESBONE_OFFLINE", "1")
