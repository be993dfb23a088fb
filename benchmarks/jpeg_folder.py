"""Synthesized JPEG folders for the data benchmarks: seeded, class sub-folders, smooth random
content (a low-resolution noise image blown up) so the files are the size of photos, not of
flat colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["jpeg_folder"]


def jpeg_folder(folder: Path, count: int, size: int = 256, classes: int = 10, seed: int = 0) -> Path:
    """``count`` JPEGs of size×size in ``folder/<class>/``; files already there are kept."""
    rng = np.random.default_rng(seed)
    for i in range(count):
        path = folder / str(i % classes) / f"{i:06d}.jpg"
        coarse = rng.integers(0, 256, (size // 16, size // 16, 3), dtype=np.uint8)
        fine = rng.integers(-24, 24, (size, size, 3))
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        big = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), dtype=np.int64)
        Image.fromarray(np.clip(big + fine, 0, 255).astype(np.uint8)).save(path, quality=90)
    return folder
