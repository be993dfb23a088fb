"""Fine-tuning views: drawn from (seed, draw number), applied alike to files and tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxprune.data.augment import draw_view, resolve_mode
from onnxprune.data.sources import CENTRE, Dataset, View, load_data
from onnxprune.graph.image_input import ImageInput

NCHW = ImageInput("x", "NCHW", 3, 16, 16, "N")


def test_auto_mixes_label_free_runs_and_shifts_labelled_classifiers() -> None:
    assert resolve_mode("auto", (1, 10), labels=True) == "shift"
    assert resolve_mode("auto", (1, 84, 8400), labels=True) == "none"
    for shape in ((1, 10), (1, 84, 8400), (1, 21, 64, 64)):  # label-free, the original teaches on any input
        assert resolve_mode("auto", shape) == "mix"
    assert resolve_mode("shift", (1, 84, 8400)) == "shift"


@pytest.mark.parametrize("mode", ["shift", "crop", "crop-flip"])
def test_views_are_drawn_from_the_seed_and_differ_between_draws(mode: str) -> None:
    views = [draw_view(mode, np.random.default_rng([0, draw])) for draw in range(12)]
    again = [draw_view(mode, np.random.default_rng([0, draw])) for draw in range(12)]
    assert views == again and len(set(views)) > 1
    for v in views:
        assert 0 <= v.top and v.top + v.height <= 1 + 1e-9 and 0 <= v.left and v.left + v.width <= 1 + 1e-9
        assert abs(v.dy) <= 1 / 16 and abs(v.dx) <= 1 / 16
    assert any(v.flip for v in views) == (mode == "crop-flip")
    if mode != "shift":
        assert all(0.25 - 1e-9 <= v.height * v.width <= 1 + 1e-9 for v in views)


def test_a_crop_of_a_file_and_of_its_tensor_agree(tmp_path: Path) -> None:
    # left half red, right half blue: a crop of the left quarter, mirrored, is red everywhere
    pixels = np.zeros((16, 16, 3), np.uint8)
    pixels[:, :8, 0] = 255
    pixels[:, 8:, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "a.png")
    files = load_data(tmp_path, NCHW)
    tensors = Dataset.of_array(files.inputs, image=NCHW)
    view = View(top=0.0, left=0.0, height=1.0, width=0.25, flip=True, cover=False)
    for data in (files, tensors):
        red = data.read(0, view)
        assert red.shape == (3, 16, 16)
        assert np.allclose(red[0], red[0, 0, 0]) and red[0, 0, 0] > red[2, 0, 0]
    assert np.allclose(files.read(0, CENTRE), tensors.read(0, CENTRE))


def test_a_shift_rolls_the_image() -> None:
    x = np.arange(3 * 16 * 16, dtype=np.float32).reshape(1, 3, 16, 16)
    data = Dataset.of_array(x, image=NCHW)
    assert np.array_equal(data.read(0, View(dy=1 / 16, dx=-2 / 16)), np.roll(x[0], (1, -2), (1, 2)))
