"""The verification contract: the checker, strict shape inference, and onnxruntime agreeing
with the torch model; anything else is refused."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import SAMPLES
from onnx import numpy_helper

from onnxprune.errors import OnnxpruneError
from onnxprune.graph.load import load
from onnxprune.graph.runtime import run_model
from onnxprune.graph.runtime import run_batched
from onnxprune.graph.shapes import random_input
from onnxprune.stages.verify import verify
from onnxprune.torchview.session import TorchView


@pytest.fixture(scope="module")
def view() -> TorchView:
    loaded = load(SAMPLES / "digits_resnet.onnx")
    return TorchView.of(loaded.model, loaded.image)


def test_a_model_that_computes_what_its_torch_module_computes_passes(view: TorchView) -> None:
    x = random_input(view.image.shape(6))
    assert verify(view.model, view.imported.module, view.image.name, x) < 1e-4
    assert verify(view.model, view.imported.module, view.image.name, x, fixed_batch=4) < 1e-4  # in chunks of 4


def test_a_model_whose_weights_differ_from_the_module_is_refused(view: TorchView) -> None:
    tampered = onnx.ModelProto()
    tampered.CopyFrom(view.model)
    weight = next(i for i in tampered.graph.initializer if len(i.dims) == 4)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.1, weight.name))
    with pytest.raises(OnnxpruneError, match="differ by"):
        verify(tampered, view.imported.module, view.image.name, random_input(view.image.shape(2)))


def test_an_invalid_model_is_refused_by_the_checker(view: TorchView) -> None:
    broken = onnx.ModelProto()
    broken.CopyFrom(view.model)
    broken.graph.node[0].input[1] = "missing_weight"
    with pytest.raises(OnnxpruneError, match="fails the ONNX checker"):
        verify(broken, view.imported.module, view.image.name, random_input(view.image.shape(2)))


def test_batched_runs_equal_one_run(view: TorchView) -> None:
    x = random_input(view.image.shape(10), seed=1)
    (batched,) = run_batched(view.model, view.image.name, x, batch=3)
    np.testing.assert_array_equal(batched.shape, (10, 10))
    np.testing.assert_allclose(batched, run_model(view.model, {view.image.name: x})[0], rtol=1e-5, atol=1e-6)
