"""The printed-character sample task: rendered the same way every time, and read back by
``--labels imagefolder`` in the class order the shipped models were trained on."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from conftest import SAMPLES

sys.path.insert(0, str(SAMPLES))

from chars import CLASSES, render_set, write_folder  # noqa: E402

from onnxprune.data.sources import load_data  # noqa: E402
from onnxprune.graph.load import load  # noqa: E402
from onnxprune.graph.runtime import run_batched  # noqa: E402


def test_renders_are_repeatable_and_seeds_differ() -> None:
    a, labels = render_set(2, 5)
    b, _ = render_set(2, 5)
    c, _ = render_set(2, 6)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (2 * len(CLASSES), 32, 32, 3) and np.bincount(labels).tolist() == [2] * len(CLASSES)


def test_a_rendered_folder_is_read_in_the_models_class_order(tmp_path: Path) -> None:
    loaded = load(SAMPLES / "chars_resnet.onnx")
    data = load_data(write_folder(tmp_path / "chars", 3, 7), loaded.image, labels="imagefolder")
    logits = run_batched(loaded.model, loaded.image.name, data)[0]
    assert float((logits.argmax(1) == data.labels).mean()) > 0.9
