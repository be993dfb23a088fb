from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import SAMPLES

from onnxprune import prune
from onnxprune.graph.flops import count
from onnxprune.graph.load import load
from onnxprune.graph.runtime import run_model
from onnxprune.graph.shapes import probe_shapes

# a short schedule that checks the mechanics; it keeps no quality, so the budget is off
FAST = dict(rounds=2, round_steps=2, epochs=0.2, calibration_images=32, round_to=1, bench=False, max_drop=100)


def _flops(model: onnx.ModelProto) -> int:
    loaded = load(model)
    return count(loaded.model, probe_shapes(loaded.model, loaded.image)).flops


def test_prune_keeps_at_most_the_target_share_and_verifies() -> None:
    result = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.5, labels="imagefolder", **FAST)
    report = result.report
    assert report.flops.after <= 0.5 * report.flops.before
    assert report.flops.after == _flops(result.model)
    assert report.verification.max_abs_error <= 1e-3
    assert 0 <= report.quality.after["accuracy"] <= 1
    assert [o.name for o in result.model.graph.output] == ["logits"]
    assert result.model.opset_import[0].version == load(SAMPLES / "digits_vgg.onnx").model.opset_import[0].version


def test_same_seed_gives_a_byte_identical_model() -> None:
    settings = dict(FAST, round_steps=1, epochs=0.1)
    a = prune(SAMPLES / "digits_mobilenet.onnx", SAMPLES / "digits", 0.6, **settings)
    b = prune(SAMPLES / "digits_mobilenet.onnx", SAMPLES / "digits", 0.6, **settings)
    assert a.model.SerializeToString() == b.model.SerializeToString()


def test_python_api_takes_an_array_and_any_criterion() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((24, 3, 32, 32)).astype(np.float32)
    result = prune(SAMPLES / "digits_resnet.onnx", x, 0.7, criterion="l1", **FAST)
    assert result.report.flops.fraction <= 0.7
    out = run_model(result.model, {"image": x[:2]})[0]
    assert out.shape == (2, 10)


def test_unknown_option_is_refused() -> None:
    from onnxprune.errors import OnnxpruneError

    with pytest.raises(OnnxpruneError, match="unknown option"):
        prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.5, learning_rate=1)


@pytest.mark.slow  # an end-to-end run of a path off by default: CI runs it (--all)
def test_soft_filter_pruning_with_augmentation_reaches_the_target_and_verifies() -> None:
    result = prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", 0.5, schedule="sfp", rounds=2, round_steps=2,
                   epochs=0.2, calibration_images=32, bench=False, augment="shift", max_drop=100)
    fractions = [row.flops_fraction for row in result.report.trajectory]
    assert result.report.flops.after == _flops(result.model) <= 0.5 * result.report.flops.before
    assert fractions[-1] <= 0.5 and fractions == sorted(fractions, reverse=True)


@pytest.mark.slow  # an end-to-end run of a path off by default: CI runs it (--all)
def test_without_views_the_teacher_is_read_from_a_cache_that_is_removed_after(tmp_path, monkeypatch) -> None:
    from onnxprune.torchview.teacher import Teacher

    built = []
    real = Teacher.build_cache
    monkeypatch.setattr(Teacher, "build_cache", lambda self, *a, **k: built.append(1) or real(self, *a, **k))
    checkpoints = tmp_path / "out.report" / "checkpoint"  # not there yet, as in the CLI's first run
    result = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.5, augment="none", rounds=1, round_steps=1,
                   epochs=2, round_to=1, bench=False, max_drop=100, checkpoint_dir=str(checkpoints))
    assert built and result.report.data.augment == "none"
    assert not list(checkpoints.glob("onnxprune-teacher-*"))


@pytest.mark.slow  # an end-to-end run of a path off by default: CI runs it (--all)
def test_unlabeled_images_are_learnt_from_and_never_judged(tmp_path) -> None:
    extra = np.random.default_rng(1).standard_normal((20, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "extra.npy", extra)
    plain = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.6, labels="imagefolder", **FAST).report
    more = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.6, labels="imagefolder",
                 unlabeled=str(tmp_path / "extra.npy"), **FAST).report
    assert more.data.train == plain.data.train + 20 and more.data.validation == plain.data.validation
    assert plain.data.labelled is None and more.data.labelled == plain.data.train  # the extra carry no label
    assert more.verification.max_abs_error <= 1e-3 and more.flops.fraction <= 0.6


def test_a_missing_unlabeled_folder_is_refused_before_any_work(tmp_path) -> None:
    from onnxprune.errors import OnnxpruneError

    with pytest.raises(OnnxpruneError, match="--unlabeled .*missing: no such file or folder"):
        prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.6, unlabeled=str(tmp_path / "missing"), **FAST)
