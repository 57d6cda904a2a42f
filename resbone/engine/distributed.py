"""Several processes: torchrun's environment -> a process group, rank helpers, gathering results.

The rank helpers live in resbone.utils.distributed (the detector uses them too); this module joins
the process group. Anchor: torch.distributed + torchrun (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
`MASTER_ADDR/PORT`), as detectron2's `comm.py` uses them: gloo on CPU, nccl on GPU; without those
variables everything runs in one process. Proven by tests/engine/test_distributed.py (2 gloo processes = 1 process).
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist

from resbone.utils.distributed import all_gather_object, barrier, get_rank, get_world_size, is_main_process, reduce_mean

__all__ = ["init_distributed", "get_rank", "get_world_size", "is_main_process", "barrier",
           "all_gather_object", "reduce_mean", "broadcast_buffers", "cleanup"]


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


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Give every rank rank 0's buffers (BatchNorm statistics). DDP copies them at the start of each training
    forward, so after the last step every rank holds its own; evaluated on its share of a test set, each rank
    would score different weights from the ones the checkpoint (rank 0's) holds."""
    if get_world_size() > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
