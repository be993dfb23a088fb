from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from onnxprune.data.sources import (
    CENTRE, UNLABELLED, Dataset, Preprocess, View, bounded, check_labels, joined, load_data, split,
)
from onnxprune.errors import OnnxpruneError
from onnxprune.graph.load import ImageInput

NCHW = ImageInput("x", "NCHW", 3, 8, 8, "N")


def _image(path: Path, size=(16, 12), color=(255, 0, 0)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def test_images_are_resized_cropped_normalized_and_laid_out(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    data = load_data(tmp_path, NCHW, Preprocess(mean=(0.5,), std=(0.5,)))
    assert data.inputs.shape == (1, 3, 8, 8) and data.inputs.dtype == np.float32
    assert np.allclose(data.inputs[0, 0], 1.0) and np.allclose(data.inputs[0, 1:], -1.0)


def test_bgr_swaps_channels_and_nhwc_moves_them_last(tmp_path: Path) -> None:
    _image(tmp_path / "a.png")
    bgr = load_data(tmp_path, NCHW, Preprocess(mean=(0.0,), std=(1.0,), bgr=True))
    assert np.allclose(bgr.inputs[0, 2], 1.0) and np.allclose(bgr.inputs[0, 0], 0.0)
    nhwc = load_data(tmp_path, ImageInput("x", "NHWC", 3, 8, 8, 1), Preprocess(mean=(0.0,), std=(1.0,)))
    assert nhwc.inputs.shape == (1, 8, 8, 3)


def test_grayscale_models_get_one_channel(tmp_path: Path) -> None:
    _image(tmp_path / "a.jpg", color=(128, 128, 128))
    data = load_data(tmp_path, ImageInput("x", "NCHW", 1, 8, 8, 1))
    assert data.inputs.shape == (1, 1, 8, 8)


def test_imagefolder_labels_use_integer_folder_names(tmp_path: Path) -> None:
    for label in ("3", "10"):
        _image(tmp_path / label / "img.png")
    data = load_data(tmp_path, NCHW, labels="imagefolder")
    assert sorted(data.labels.tolist()) == [3, 10]


def test_imagefolder_labels_index_sorted_class_names(tmp_path: Path) -> None:
    for label in ("dog", "cat"):
        _image(tmp_path / label / "img.png")
    data = load_data(tmp_path, NCHW, labels="imagefolder")
    assert dict(zip(data.names, data.labels.tolist())) == {"cat/img.png": 0, "dog/img.png": 1}


def test_csv_labels_may_leave_images_out_but_not_all(tmp_path: Path) -> None:
    _image(tmp_path / "imgs" / "a.png")
    _image(tmp_path / "imgs" / "b.png")
    (tmp_path / "labels.csv").write_text("file,label\na.png,4\nb.png,7\n")
    data = load_data(tmp_path / "imgs", NCHW, labels=str(tmp_path / "labels.csv"))
    assert data.labels.tolist() == [4, 7]
    (tmp_path / "labels.csv").write_text("a.png,4\n")
    data = load_data(tmp_path / "imgs", NCHW, labels=str(tmp_path / "labels.csv"))
    assert data.labels.tolist() == [4, UNLABELLED]
    check_labels(data, (10,), "--labels")  # an unlabelled image is no class index out of range
    (tmp_path / "labels.csv").write_text("c.png,4\n")
    with pytest.raises(OnnxpruneError, match="labels none of the 2 images"):
        load_data(tmp_path / "imgs", NCHW, labels=str(tmp_path / "labels.csv"))


def test_corrupt_images_are_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    _image(tmp_path / "good.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING, logger="onnxprune"):
        data = load_data(tmp_path, NCHW)
    assert len(data) == 1 and "skipped 1 unreadable" in caplog.text


@pytest.mark.parametrize("setup, message", [
    (lambda d: d / "nope", "no such file"),
    (lambda d: d, "holds no images"),
    (lambda d: (d / "x.txt").write_text("hi") and d / "x.txt", "give a folder of images or an .npy"),
])
def test_unusable_data_is_refused(tmp_path: Path, setup, message: str) -> None:
    with pytest.raises(OnnxpruneError, match=message):
        load_data(setup(tmp_path), NCHW)


def test_npy_must_match_the_model_input(tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", np.zeros((4, 3, 8, 8), np.float32))
    assert load_data(tmp_path / "ok.npy", NCHW).inputs.shape == (4, 3, 8, 8)
    np.save(tmp_path / "bad.npy", np.zeros((4, 3, 9, 8), np.float32))
    with pytest.raises(OnnxpruneError, match=r"needs \(N, 3, 8, 8\)"):
        load_data(tmp_path / "bad.npy", NCHW)


def test_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.arange(80 * 3 * 8 * 8, dtype=np.float32).reshape(80, 3, 8, 8))
    data = load_data(tmp_path / "d.npy", NCHW)
    train, val = split(data, 0.25, seed=1)
    again, _ = split(data, 0.25, seed=1)
    assert len(val) == 20 and len(train) == 60
    assert set(train.names).isdisjoint(val.names) and train.names == again.names


def test_a_few_images_hold_out_enough_to_judge(tmp_path: Path) -> None:
    """15 % of 48 images would be 7: too few to tell anything, so 16 are held out; a set under 48
    gives a third of itself."""
    data = Dataset.of_array(np.zeros((48, 3, 8, 8), np.float32))
    assert [len(part) for part in split(data, 0.15, seed=0)] == [32, 16]
    assert [len(part) for part in split(data.subset(np.arange(30)), 0.15, seed=0)] == [20, 10]
    assert len(split(Dataset.of_array(np.zeros((400, 3, 2, 2), np.float32)), 0.15, seed=0)[1]) == 60


def test_views_of_held_out_images_read_each_image_shifted(tmp_path: Path) -> None:
    """A data set of views reads the image each view shows, as the view shows it, and keeps the labels."""
    from onnxprune.data.augment import judging_views

    array = np.random.default_rng(0).normal(size=(3, 1, 16, 16)).astype(np.float32)
    data = Dataset.of_array(array, labels=np.array([0, 1, 2]))
    views = judging_views(4, seed=0, image=2)
    seen = data.seen_as([2, 2, 2, 2], views)
    assert views[0] == CENTRE and len({(v.dy, v.dx) for v in views}) == 4
    assert np.array_equal(seen.read(0), array[2]) and list(seen.labels) == [2, 2, 2, 2]
    wide = Dataset.of_array(np.arange(64, dtype=np.float32).reshape(1, 1, 8, 8))
    moved = wide.seen_as([0], [View(dy=2 / 8, dx=-1 / 8, edge=True)]).read(0)[0]
    assert moved[2:, :7].tolist() == np.arange(64).reshape(8, 8)[:6, 1:].tolist()  # moved down 2, left 1
    assert moved[0].tolist() == moved[2].tolist() and (moved[:, 7] == moved[:, 6]).all()  # the border repeated
    assert seen.kind == "tensors" and seen.item_bytes == 4 * 16 * 16 and len(set(seen.names)) == 4


def test_a_folder_is_listed_not_decoded_and_npy_is_memory_mapped(tmp_path: Path, monkeypatch) -> None:
    import onnxprune.data.sources as data_module

    for i in range(3):
        _image(tmp_path / f"{i}.png")
    decoded = []
    real_cut = data_module._cut
    monkeypatch.setattr(data_module, "_cut", lambda *a: decoded.append(1) or real_cut(*a))
    data = load_data(tmp_path, NCHW)
    assert len(data) == 3 and not decoded
    assert [b.shape for b in data.batches(2)] == [(2, 3, 8, 8), (1, 3, 8, 8)] and len(decoded) == 3
    np.save(tmp_path / "d.npy", np.ones((5, 3, 8, 8), np.float16))
    tensors = load_data(tmp_path / "d.npy", NCHW)
    assert isinstance(tensors.source.array, np.memmap)
    assert tensors.read(4).dtype == np.float32 and tensors.read(4).sum() == 3 * 8 * 8


def test_validation_is_bounded_and_the_rest_trains(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.zeros((100, 3, 8, 8), np.float32))
    train, val = split(load_data(tmp_path / "d.npy", NCHW), 0.5, seed=0, max_val=10)
    assert (len(train), len(val)) == (90, 10)
    assert len(bounded(val, 4, seed=0)) == 4 and bounded(val, 40, seed=0) is val


def test_an_image_that_cannot_be_decoded_names_its_file(tmp_path: Path) -> None:
    path = _image(tmp_path / "a.png")
    data = load_data(tmp_path, NCHW)
    path.write_bytes(path.read_bytes()[:40])  # the header stays, the pixels go
    with pytest.raises(OnnxpruneError, match="cannot decode .*a.png"):
        data.read(0)


def test_a_small_held_out_share_is_told_what_it_can_resolve() -> None:
    from onnxprune.data.sources import small_data_note

    note = small_data_note(204, 36, 3.0)
    assert "36 held-out images" in note and "2.8 points" in note and "±10 points" in note
    assert "wider than --max-drop 3; about 385 would resolve it" in note
    assert small_data_note(2000, 500, 3.0) is None


def test_unlabeled_images_join_the_training_set_unlabelled(tmp_path: Path) -> None:
    for k in range(3):
        _image(tmp_path / "folder" / str(k % 2) / f"{k}.png", color=(50 * k, 0, 0))
    train = load_data(tmp_path / "folder", NCHW, labels="imagefolder")
    extra_inputs = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "extra.npy", extra_inputs)
    both = joined(train, load_data(tmp_path / "extra.npy", NCHW))
    assert len(both) == 7 and both.kind == "images" and both.classes == train.classes
    assert list(both.labels[:3]) == list(train.labels) and (both.labels[3:] == UNLABELLED).all()
    assert np.array_equal(both.inputs[:3], train.inputs) and np.array_equal(both.inputs[3:], extra_inputs)
    assert both.names[3] == "extra.npy[0]"
    picked = both.subset([4, 0])  # as the loader and the calibration set take them
    assert np.array_equal(picked.inputs, np.stack([extra_inputs[1], train.inputs[0]]))
    # without labels the joined set has none either
    assert joined(load_data(tmp_path / "folder", NCHW), load_data(tmp_path / "extra.npy", NCHW)).labels is None


def test_unlabeled_inputs_of_another_shape_are_refused(tmp_path: Path) -> None:
    _image(tmp_path / "folder" / "a.png")
    np.save(tmp_path / "wrong.npy", np.zeros((2, 3, 4, 4), np.float32))
    with pytest.raises(OnnxpruneError, match="--unlabeled holds inputs of 48 values"):
        joined(load_data(tmp_path / "folder", NCHW), Dataset.of_array(np.zeros((2, 3, 4, 4), np.float32)))
