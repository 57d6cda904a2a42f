"""Several processes: torchrun's environment -> a process group, rank helpers, gathering results.

Anchor: torch.distributed + torchrun (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR/PORT`), as
detectron2's `comm.py` uses them: gloo on CPU, nccl on GPU; without those variables everything runs
in one process. Proven by tests/engine/test_distributed.py (2 gloo processes = 1 process).
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "get_rank", "get_world_size", "is_main_process", "barrier",
           "all_gather_object", "reduce_mean", "cleanup"]


def init_distributed(device: str = "cpu") -> tuple[int, int]:
    """Join the process group torchrun describes (if any); returns (rank, world_size)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or dist.is_initialized():
        return get_rank(), get_world_size()
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise ValueError(f"WORLD_SIZE={world} but ${name} is not set; launch with "
                             "`torchrun --nproc_per_node N -m resbone train ...`")
    backend = "nccl" if device.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return get_rank(), get_world_size()


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
    """The mean over ranks of each scalar (for logging the losses of the whole global batch)."""
    if get_world_size() == 1:
        return values
    keys = sorted(values)
    device = "cuda" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return {k: v / get_world_size() for k, v in zip(keys, tensor.tolist())}


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
