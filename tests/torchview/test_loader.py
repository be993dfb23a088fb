"""Fine-tuning batches: planned from the seed, the same whatever the workers or processes."""

from __future__ import annotations

import numpy as np
import torch

from onnxprune.data.sources import Dataset
from onnxprune.graph.image_input import ImageInput
from onnxprune.torchview.loader import plan_batches, training_loader

IMAGE = ImageInput("x", "NCHW", 3, 8, 8, "N")


def _data(n: int = 10) -> Dataset:
    x = np.random.default_rng(0).standard_normal((n, 3, 8, 8)).astype(np.float32)
    return Dataset.of_array(x, labels=np.arange(n), image=IMAGE)


def _all(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x.clone(), y.clone()) for x, y, _ in loader]


def test_batches_reshuffle_each_pass_and_depend_on_the_seed() -> None:
    batches = list(plan_batches(10, 4, 5, 0))
    assert [len(b) for b in batches] == [4] * 5
    first_pass = np.concatenate(batches)[:10]
    assert sorted(first_pass) == list(range(10))  # every item once before any comes again
    assert [b.tolist() for b in plan_batches(10, 4, 5, 0)] == [b.tolist() for b in batches]
    assert [b.tolist() for b in plan_batches(10, 4, 5, 1)] != [b.tolist() for b in batches]


def test_workers_do_not_change_the_batches() -> None:
    data = _data()
    inline = _all(training_loader(data, 4, 6, (0, 1), "crop-flip", 0, "cpu"))
    workers = _all(training_loader(data, 4, 6, (0, 1), "crop-flip", 2, "cpu"))
    assert len(inline) == 6
    for (xa, ya), (xb, yb) in zip(inline, workers):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_processes_split_every_global_batch() -> None:
    data = _data()
    whole = _all(training_loader(data, 4, 3, 7, "shift", 0, "cpu"))
    parts = [_all(training_loader(data, 4, 3, 7, "shift", 0, "cpu", rank=r, world=2)) for r in range(2)]
    for step, (x, y) in enumerate(whole):
        assert torch.equal(torch.cat([parts[0][step][1], parts[1][step][1]]).sort().values, y.sort().values)
        assert torch.equal(parts[0][step][0], x[0::2]) and torch.equal(parts[1][step][0], x[1::2])


def test_labels_come_with_their_images() -> None:
    data = _data()
    for x, y, positions in training_loader(data, 4, 3, 0, "none", 0, "cpu"):
        assert torch.equal(y, positions)  # the labels are the positions here
        for xi, p in zip(x, positions):
            assert torch.equal(xi, torch.from_numpy(data.read(int(p))))


def test_an_image_that_will_not_decode_is_replaced_by_the_next_with_its_label(tmp_path) -> None:
    import pytest
    from PIL import Image

    from onnxprune.data.sources import load_data
    from onnxprune.errors import OnnxpruneError

    for i in range(3):
        Image.new("RGB", (8, 8), (80 * i, 0, 0)).save(tmp_path / f"{i}.png")
    data = Dataset(load_data(tmp_path, IMAGE).source, np.arange(3), labels=np.array([10, 11, 12]))
    broken = tmp_path / "1.png"
    broken.write_bytes(broken.read_bytes()[:40])  # the header stays, the pixels go
    batches = _all(training_loader(data, 3, 1, 0, "none", 1, "cpu"))
    assert sorted(batches[0][1].tolist()) == [10, 12, 12]  # 1.png trained as 2.png, with 2.png's label
    for path in tmp_path.glob("*.png"):
        path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(OnnxpruneError) as caught:  # from a worker process: still the one line
        _all(training_loader(data, 3, 1, 0, "none", 1, "cpu"))
    assert str(caught.value) == "--data: none of the training images could be decoded"
