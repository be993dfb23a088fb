"""The torchvision CNNs the latency benchmarks use: weights=None, exported by torch's TorchScript
exporter (as the test zoo does), with seeded random images as data."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from zoo import build_torch_model, export_onnx  # noqa: E402

__all__ = ["torchvision_onnx", "random_images"]


def torchvision_onnx(name: str, size: int = 224) -> onnx.ModelProto:
    """torchvision's ``name`` at size×size as an ONNX model (nothing left on disk)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.onnx"
        export_onnx(build_torch_model(name), path, "torchscript", size=size)
        return onnx.load(str(path))


def random_images(count: int, size: int = 224, seed: int = 0) -> np.ndarray:
    """``count`` seeded N(0, 1) images of 3×size×size, float32."""
    return np.random.default_rng(seed).standard_normal((count, 3, size, size)).astype(np.float32)
