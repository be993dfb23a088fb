from __future__ import annotations

import numpy as np
import torch
from conftest import SAMPLES

from onnxprune.graph.load import load
from onnxprune.torchview.teacher import Teacher


def test_on_the_cpu_the_teacher_runs_in_onnxruntime_without_importing_the_original_into_torch() -> None:
    loaded = load(SAMPLES / "digits_mobilenet.onnx")
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(loaded.image.shape(5)).astype(np.float32))
    fast, in_torch = Teacher(loaded), Teacher(loaded, in_torch=True)
    outputs = fast(x)
    assert "view" not in vars(fast)  # no torch import was made
    expected = in_torch(x)
    assert "view" in vars(in_torch)  # feature hints need the torch one: its maps
    assert len(outputs) == len(expected)
    for a, b in zip(outputs, expected):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)
