"""Fine-tuning batches from a lazy ``Dataset``: decoded and augmented in DataLoader worker
processes, pinned for the GPU, split across processes under torchrun.

The order is planned up front from the seed: step s takes the next ``batch_size`` positions of
seeded reshuffles, and item j of it is drawn with view number s × batch_size + j. Under
DistributedDataParallel process r takes items r, r + world, … of each global batch, so N
processes train on the very batches one process would, and no batch depends on the number of
workers.
"""

from __future__ import annotations

import ctypes

import logging
import os
from collections.abc import Iterator

import numpy as np
import torch

from ..data.augment import draw_view
from ..data.sources import Dataset, UnreadableImage
from ..errors import OnnxpruneError

__all__ = ["plan_batches", "training_loader", "default_workers"]

log = logging.getLogger(__name__)


def plan_batches(n: int, batch_size: int, steps: int, seed) -> Iterator[np.ndarray]:
    """``steps`` batches of positions from seeded reshuffles of range(n)."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for _ in range(steps):
        while len(order) < batch_size:
            order.extend(rng.permutation(n).tolist())
        yield np.asarray(order[:batch_size])
        del order[:batch_size]


class _Views(torch.utils.data.Dataset):
    """Item (position, draw) → (input tensor, label or -1, position), decoded where the loader runs it."""

    def __init__(self, data: Dataset, mode: str, seed) -> None:
        self.data, self.mode = data, mode
        self.seed = list(np.atleast_1d(seed))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, key: tuple[int, int]):
        position, draw = key
        view = draw_view(self.mode, np.random.default_rng([*self.seed, draw]))
        n = len(self.data)
        for offset in range(n):  # a file that will not decode: the next one, with its label, in its place
            at = (position + offset) % n
            try:
                x = torch.from_numpy(self.data.read(at, view))
            except UnreadableImage as err:
                if offset == 0:
                    log.warning("%s; training on the next image in its place", err)
                continue
            label = -1 if self.data.labels is None else int(self.data.labels[at])
            return x, label, at
        raise OnnxpruneError("--data: none of the training images could be decoded")


class _PlannedBatches(torch.utils.data.Sampler):
    def __init__(self, n: int, batch_size: int, steps: int, seed, rank: int, world: int) -> None:
        self.args = (n, batch_size, steps, seed)
        self.rank, self.world, self.steps = rank, world, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        n, batch_size, steps, seed = self.args
        for step, positions in enumerate(plan_batches(n, batch_size, steps, seed)):
            keys = [(int(p), step * batch_size + j) for j, p in enumerate(positions)]
            yield keys[self.rank :: self.world]


def default_workers() -> int:
    """Decoding workers: half the cores (the other half trains), at most 8."""
    return max(1, min(8, (os.cpu_count() or 2) // 2))


PREFETCH_BYTES = 128 << 20


def training_loader(data: Dataset, batch_size: int, steps: int, seed, mode: str, workers: int,
                    device: str, rank: int = 0, world: int = 1) -> _OneLineErrors:
    """``steps`` batches of (inputs, labels, positions); each process gets its share of every global batch."""
    if world > batch_size:
        raise ValueError(f"batch size {batch_size} is smaller than the {world} processes")
    sampler = _PlannedBatches(len(data), batch_size, steps, seed, rank, world)
    # batches waiting in the queue are memory too: 4 each of small images, one of a detector's
    batch_bytes = data.item_bytes * batch_size // world
    return _OneLineErrors(torch.utils.data.DataLoader(
        _Views(data, mode, seed), batch_sampler=sampler, num_workers=workers,
        pin_memory=device.startswith("cuda"), persistent_workers=False,
        prefetch_factor=(4 if batch_bytes <= PREFETCH_BYTES else 1) if workers else None,
        # workers decode with PIL and numpy; torch threads in them would only compete with training
        worker_init_fn=_one_thread if workers else None,
    ))


def _trim_heap() -> None:
    """Give the heap's free pages back to the system before worker processes fork: pages the
    parent reuses after the fork would otherwise be copied on its first write to each, while
    the workers still share them, and the first fine-tuning steps of a large model slow down
    many times over (``benchmarks/overhead.py``: the column after the fixed costs). glibc only;
    elsewhere a no-op."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _OneLineErrors:
    """The loader, with an error raised in a worker process handed on as the one line it was:
    torch re-raises it with the worker's whole traceback in its message."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        if self.loader.num_workers:
            _trim_heap()
        batches = iter(self.loader)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except OnnxpruneError as err:
                last = str(err).strip().splitlines()[-1]
                prefix = f"{type(err).__module__}.{type(err).__name__}: "
                raise type(err)(last.removeprefix(prefix)) from None
            yield batch


def _one_thread(_worker: int) -> None:
    torch.set_num_threads(1)
