"""Files as users export them: each exporter's defaults (batch fixed at 1, BatchNorm folded),
a dynamic batch, detectors. Random weights on random data keep no quality, so the budget is off."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import SAMPLES
from zoo import EXPORTERS

from onnxprune import prune
from onnxprune.graph.runtime import run_model

pytestmark = pytest.mark.slow  # run with --all (CI does)

# one round, one fine-tuning step: these tests are about the files, not the quality
FAST = dict(rounds=1, round_steps=1, epochs=0, calibration_images=32, round_to=1, bench=False, max_drop=100)


def _signature(model: onnx.ModelProto) -> list[tuple[str, tuple]]:
    def dims(vi):
        return tuple(d.dim_value or d.dim_param for d in vi.type.tensor_type.shape.dim)

    return [(vi.name, dims(vi)) for vi in list(model.graph.input) + list(model.graph.output)]


def _prunes_to_half_keeping_the_signature(path, size: int = 64) -> dict:
    original = onnx.load(str(path))
    x = np.random.default_rng(0).standard_normal((24, 3, size, size)).astype(np.float32)
    result = prune(path, x, 0.5, **FAST)
    assert result.report.flops.fraction <= 0.5
    onnx.checker.check_model(result.model, full_check=True)
    assert _signature(result.model) == _signature(original)
    batch = original.graph.input[0].type.tensor_type.shape.dim[0].dim_value or 2
    ours = run_model(result.model, {original.graph.input[0].name: x[:batch]})
    theirs = run_model(original, {original.graph.input[0].name: x[:batch]})
    assert [o.shape for o in ours] == [o.shape for o in theirs]
    return result.report


@pytest.mark.slow
@pytest.mark.parametrize("exporter", EXPORTERS)
@pytest.mark.parametrize("name", ["mobilenet_v3_small"])
def test_a_default_export_prunes_to_half_and_keeps_batch_one(zoo_model, name: str, exporter: str) -> None:
    report = _prunes_to_half_keeping_the_signature(zoo_model(name, exporter, dynamic_batch=False))
    assert report.fixed_batch == 1


@pytest.mark.slow
@pytest.mark.parametrize("name, exporter", [("mobilenet_v3_small", "torchscript")])
def test_a_dynamic_batch_export_prunes_to_half(zoo_model, name: str, exporter: str) -> None:
    report = _prunes_to_half_keeping_the_signature(zoo_model(name, exporter))
    assert report.fixed_batch is None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov8n", "yolox_style"])
def test_a_detector_exported_with_defaults_prunes_to_half(tmp_path, name: str) -> None:
    from detectors import build_detector, export_detector

    path = export_detector(build_detector(name), tmp_path / f"{name}.onnx", size=64)
    report = _prunes_to_half_keeping_the_signature(path, size=64)
    assert report.batchnorm_inserted > 0 and report.quality.drop.metric == "explained_variance"


@pytest.mark.parametrize("opset, simplify", [(12, False), (12, True), (17, False), (17, True)])
def test_a_yolov8_exported_with_dynamic_shapes_prunes_to_half(tmp_path, opset: int, simplify: bool) -> None:
    # the decode reads the batch, height and width with Shape → Gather: a scalar index written
    # back by fine-tuning must stay a scalar
    from detectors import export_yolov8_dynamic

    path = export_yolov8_dynamic(tmp_path, opset, simplify)
    x = np.random.default_rng(0).standard_normal((24, 3, 64, 64)).astype(np.float32)
    result = prune(path, x, 0.5, input_size=(64, 64), **FAST)
    assert result.report.flops.fraction <= 0.5
    assert _signature(result.model) == _signature(onnx.load(str(path)))
    for size in (64, 96):  # still any size, as exported
        (boxes,) = run_model(result.model, {"images": x[:2, :, :size, :size] if size == 64 else
                                            np.zeros((2, 3, size, size), np.float32)})
        assert boxes.shape[:2] == (2, 84)


def test_the_default_export_of_a_sample_keeps_its_batch_and_structure() -> None:
    original = onnx.load(str(SAMPLES / "digits_resnet.default.onnx"))
    result = prune(SAMPLES / "digits_resnet.default.onnx", SAMPLES / "digits", 0.6, labels="imagefolder",
                   rounds=1, round_steps=1, epochs=0, calibration_images=32, round_to=1, bench=False,
                   max_drop=100, structure="width")  # channels only: every node stays
    assert _signature(result.model) == _signature(original)
    assert sorted(n.op_type for n in result.model.graph.node) == sorted(n.op_type for n in original.graph.node)
    convs = sum(n.op_type == "Conv" for n in original.graph.node)
    assert result.report.batchnorm_inserted == convs


def test_a_keras_application_from_tf2onnx_prunes_to_half() -> None:
    # NHWC input behind a Transpose, BatchNorm folded by tf2onnx, a Softmax head (sample_models/keras_export.py)
    path = SAMPLES / "keras_mobilenetv2.onnx"
    x = np.random.default_rng(0).random((24, 96, 96, 3)).astype(np.float32)
    result = prune(path, x, 0.5, **FAST)
    assert result.report.flops.fraction <= 0.5 and result.report.batchnorm_inserted > 0
    assert _signature(result.model) == _signature(onnx.load(str(path)))
    probabilities = run_model(result.model, {"input": x[:3]})[0]
    np.testing.assert_allclose(probabilities.sum(1), 1.0, rtol=1e-5)
