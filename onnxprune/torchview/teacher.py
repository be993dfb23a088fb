"""The teacher: the original model's outputs for each fine-tuning batch.

By default the original runs in torch on every batch, on the same augmented views the student
sees, so nothing of the data set's size is held. Without augmentation the outputs for an image
never change, so where every training image is seen at least twice and the outputs fit in
``CACHE_LIMIT`` on disk, one onnxruntime pass writes them to memory-mapped files and batches
read their rows instead: ``benchmarks/throughput.py`` measures what the forward pass costs. The
files go into the checkpoint folder (the CLI's is in the report folder, on the output's disk),
else the system's temporary folder, and are deleted when the run ends.
"""

from __future__ import annotations

import functools
import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from ..data.sources import Dataset
from ..graph.load import LoadedModel
from ..graph.runtime import batch_for, make_session
from .view import TorchView

__all__ = ["Teacher", "CACHE_LIMIT", "worth_caching"]

log = logging.getLogger(__name__)

CACHE_LIMIT = 2 << 30  # bytes of cached outputs, on disk


class Teacher:
    """``teacher(x, positions)``: the original's outputs on batch ``x`` (training positions
    ``positions``), from the cache when there is one and the batch is not augmented.

    Otherwise the original runs on ``x`` as it is: in onnxruntime where ``x`` is on the CPU (no
    torch import of the original is made, and its weights are not held twice), in torch on a GPU
    and where ``in_torch`` asks for it (feature hints read its maps)."""

    def __init__(self, loaded: LoadedModel, in_torch: bool = False) -> None:
        self.loaded = loaded
        self.in_torch = in_torch
        self.cache: list[np.ndarray] | None = None
        self.folder: Path | None = None
        self.made: list[Path] = []  # folders made to hold the cache, removed with it when left empty

    @functools.cached_property
    def view(self) -> TorchView:
        """The original in torch: imported when first needed (a run whose teacher outputs are all
        cached never needs it)."""
        return TorchView.of(self.loaded.model, self.loaded.image, check=False)

    @functools.cached_property
    def module(self) -> torch.nn.Module:
        return self.view.imported.module.eval().requires_grad_(False)

    @functools.cached_property
    def session(self):
        # worker threads that do not spin: between its runs torch needs the cores
        return make_session(self.loaded.model, threads=torch.get_num_threads(), spinning=False)

    def __call__(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> list[torch.Tensor]:
        if self.cache is not None and positions is not None:
            rows = positions.numpy()
            return [torch.from_numpy(np.ascontiguousarray(c[rows])).to(x.device, non_blocking=True)
                    for c in self.cache]
        if x.device.type == "cpu" and not self.in_torch:
            feed = {self.loaded.image.name: x.detach().contiguous().numpy()}
            return [torch.from_numpy(o) for o in self.session.run(None, feed)]
        self.module.to(x.device)
        return self.view.run(self.module, x)

    def build_cache(self, loaded: LoadedModel, train: Dataset, where: str | Path | None) -> None:
        """Run the original once over ``train`` in onnxruntime into .npy files under ``where``."""
        batch = batch_for(int(np.prod(loaded.image.shape(1))))
        if where is not None:
            where = Path(where)
            self.made = [p for p in (where, *where.parents) if not p.exists()]
            where.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="onnxprune-teacher-", dir=where))
        session = make_session(loaded.model)
        name = loaded.image.name
        files: list[np.memmap] = []
        for start, x in zip(range(0, len(train), batch), train.batches(batch)):
            outputs = session.run(None, {name: x})
            if not files:
                files = [np.lib.format.open_memmap(self.folder / f"output{i}.npy", "w+", np.float32,
                                                   (len(train), *o.shape[1:])) for i, o in enumerate(outputs)]
            for f, o in zip(files, outputs):
                f[start : start + len(o)] = o
        for f in files:
            f.flush()
        # read-only maps: pages the kernel can drop, not memory of this process
        self.cache = [np.load(self.folder / f"output{i}.npy", mmap_mode="r") for i in range(len(files))]
        log.info("teacher outputs cached for %d training inputs (%s)", len(train), self.folder)

    def close(self) -> None:
        self.cache = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        for folder in self.made:  # innermost first
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self.made = []


def worth_caching(augment: str, images_seen: int, items: int, bytes_per_item: int, processes: int) -> bool:
    """A cache pays where views do not change, each image comes back, and it fits on disk (one
    process: under torchrun each would build its own)."""
    return (augment == "none" and processes == 1 and images_seen >= 2 * items
            and items * bytes_per_item <= CACHE_LIMIT)
