"""This process's place among several (torch.distributed): rank, world size, gathering, means.

Without an initialised process group everything answers for one process (rank 0 of 1), so the same code
runs alone or under torchrun. The engine joins the group (resbone.engine.distributed.init_distributed);
the detector's losses average their normalisers over the group (FCOS's reduce_sum / world size).
Reference tests: tests/engine/test_distributed.py (2 gloo processes = 1 process).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

__all__ = ["all_gather_object", "barrier", "get_rank", "get_world_size", "is_main_process", "reduce_mean"]


def get_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if get_world_size() > 1:
        dist.barrier()


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (one process: [obj])."""
    if get_world_size() == 1:
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def reduce_mean(values: dict[str, float]) -> dict[str, float]:
    """The mean over ranks of each scalar (every rank must call it, with the same keys)."""
    if get_world_size() == 1:
        return values
    keys = sorted(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {k: v / get_world_size() for k, v in zip(keys, tensor.tolist())}
