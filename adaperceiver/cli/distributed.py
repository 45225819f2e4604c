"""Scale-out of ``sweep`` with ``torchrun`` and ``torch.distributed``: the process group
(from torchrun's environment: WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR/PORT), the shard
of the data each rank evaluates and the sum of the counts over ranks.

Sharding is by whole batches: the n images form ceil(n / batch_size) consecutive batches
[0, bs), [bs, 2 bs), ... (the last may be shorter), and rank r of W evaluates batches
floor(r nb / W) .. floor((r + 1) nb / W) - 1. Every image is evaluated exactly once (no
padding, no duplicates, whatever n and W), and every batch is the same batch a single
process with the same ``--batch-size`` sees, so batch_mean early exit (EXIT-2, decided per
batch) gives the same exits on any number of ranks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    """This process's place: rank of world_size (1 and 0 without torchrun), local_rank on its
    node, and whether a process group was started (world_size > 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> World:
    """This process's rank from torchrun's environment (rank 0 of 1 without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return World()
    return World(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def start(world: World, device_type: str) -> None:
    """Join torchrun's process group when world_size > 1: nccl for CUDA, gloo for CPU."""
    if world.distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo",
                                timeout=timedelta(hours=2))


def stop(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()


def batch_range(num_images: int, batch_size: int, world: World) -> range:
    """The image indices rank ``world.rank`` evaluates (see the module docstring)."""
    batches = -(-num_images // batch_size)  # ceil
    first = world.rank * batches // world.world_size
    last = (world.rank + 1) * batches // world.world_size
    return range(min(first * batch_size, num_images), min(last * batch_size, num_images))


def all_sum(tensor: torch.Tensor, world: World, device: torch.device) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all ranks (itself when not distributed); the
    result is on the CPU. NCCL reduces CUDA tensors, gloo CPU ones."""
    if not world.distributed:
        return tensor
    work = tensor.to(device) if device.type == "cuda" else tensor.clone()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.cpu()


def gather_ints(value: int, world: World, device: torch.device) -> list[int]:
    """``value`` of every rank, in rank order."""
    if not world.distributed:
        return [value]
    mine = torch.zeros(world.world_size, dtype=torch.int64)
    mine[world.rank] = value
    return [int(v) for v in all_sum(mine, world, device)]


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
