"""Several processes on torch's own engine: ``torchrun --nproc-per-node N -m onnxprune …``.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; ``join`` starts the process group (NCCL on GPUs,
gloo on the CPU). Every process holds the model and runs every stage; fine-tuning splits each
global batch across them (DistributedDataParallel), scoring splits the calibration batches and
gathers what each observed, so all choose the same channels; what is measured on the device
(latency tables, timings) is measured once, by rank 0, and shared. Only rank 0 writes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Ranks", "join", "leave", "ranks", "on_main", "gather_batches", "barrier"]

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    """This process's place, from torchrun's environment (one process when there is none)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    return Ranks(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def join(device: str) -> Ranks:
    """Start the process group when torchrun launched several processes; returns this one's ranks."""
    where = ranks()
    if where.world == 1:
        return where
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(where.local)
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return where


def leave() -> None:
    if ranks().world > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def barrier() -> None:
    if ranks().world > 1:
        import torch.distributed as dist

        dist.barrier()


def on_main(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0 only, its result handed to every process (measurements: running
    them on every process at once would time the processes against each other)."""
    where = ranks()
    if where.world == 1:
        return compute()
    import torch.distributed as dist

    box: list[Any] = [None]
    if where.main:
        try:
            box[0] = ("value", compute())
        except Exception as err:  # every process must learn of it, or the others wait forever
            box[0] = ("error", err)
    dist.broadcast_object_list(box, src=0)
    kind, value = box[0]
    if kind == "error":
        raise value
    return value


def gather_batches(mine: dict[str, dict[int, Any]]) -> dict[str, list[Any]]:
    """Per key, the values every process computed for its batches, in batch order (the list one
    process alone would have made)."""
    where = ranks()
    parts: list[Any] = [mine]
    if where.world > 1:
        import torch.distributed as dist

        parts = [None] * where.world
        dist.all_gather_object(parts, mine)
    merged: dict[str, dict[int, Any]] = {}
    for part in parts:
        for key, by_batch in part.items():
            merged.setdefault(key, {}).update(by_batch)
    return {key: [by_batch[i] for i in sorted(by_batch)] for key, by_batch in merged.items()}
