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
from onnxprune.torchview.view import TorchView


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


def _large_logits() -> onnx.ModelProto:
    """Six 3×3 convs that grow 64 channels to values in the thousands, and a logit that is the
    small difference of two 1×1 convs of them, then a sigmoid: float32 rounding of the large terms
    alone moves the probability by ~5e-3, and torch and onnxruntime round differently (a text
    detector's probability map, in miniature)."""
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    nodes, weights, previous = [], [], "x"
    for i in range(6):
        w = rng.normal(0, 3 / np.sqrt(64 * 9), (64, 64 if i else 3, 3, 3)).astype(np.float32) * (40 if i == 0 else 1)
        weights.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("Conv", [previous, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]))
        previous = f"c{i}"
    head = rng.normal(0, 1, (1, 64, 1, 1)).astype(np.float32)
    weights += [numpy_helper.from_array(head, "wa"), numpy_helper.from_array((head * (1 + 1e-4)).astype(np.float32), "wb")]
    nodes += [helper.make_node("Conv", [previous, "wa"], ["a"], name="a"),
              helper.make_node("Conv", [previous, "wb"], ["b"], name="b"),
              helper.make_node("Sub", ["a", "b"], ["logit"], name="logit"),
              helper.make_node("Sigmoid", ["logit"], ["y"], name="probability")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1, 32, 32])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_float32_rounding_of_a_deep_graph_is_told_from_a_fault() -> None:
    """onnxruntime and torch differ here by more than the plain tolerance, yet onnxruntime is as
    near the float64 answer as torch's own float32 is: it passes. The same graph with a head weight
    0.1 % off is still refused."""
    from onnx2torch import convert

    model = _large_logits()
    module = convert(model)
    x = np.random.default_rng(1).normal(size=(4, 3, 32, 32)).astype(np.float32)
    assert verify(model, module, "x", x) > 1e-4  # beyond the tolerance, within rounding
    tampered = onnx.ModelProto()
    tampered.CopyFrom(model)
    weight = next(i for i in tampered.graph.initializer if i.name == "wa")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.001, weight.name))
    with pytest.raises(OnnxpruneError, match="differ by"):
        verify(tampered, module, "x", x)


def test_rounding_explains_only_what_float32_rounding_can() -> None:
    from onnxprune.stages.verify import rounding_explains

    exact = np.linspace(0, 1, 50)
    ours = exact + 1e-3  # torch's float32 is 1e-3 off the float64 answer
    assert rounding_explains(exact - 2e-3, ours, exact, 1.0)
    assert not rounding_explains(exact + 5e-2, ours, exact, 1.0)
    assert not rounding_explains(exact, ours, None, 1.0)  # no float64 answer: the plain rule


def test_rounding_of_onnxruntimes_fused_kernels_is_told_from_a_fault(view: TorchView, monkeypatch) -> None:
    """PP-OCRv4's DB text detector, pruned and fine-tuned, came out of onnxruntime's fused kernels
    8e-4 off the torch model's sigmoid map while its plain kernels were as near the float64 answer
    as torch; the same kernels put the shipped original 4e-4 off. Such a run is written; a fault,
    which the plain kernels show too, is still refused."""
    from onnxprune.stages import verify as verifying

    real = verifying.make_session

    class Fused:  # onnxruntime's fused kernels, rounding further than the tolerance and torch's rounding
        def __init__(self, session, shift: float) -> None:
            self.session, self.shift = session, shift

        def run(self, names, feed):
            return [o + self.shift for o in self.session.run(names, feed)]

    def session(model, fused: bool = True, **kwargs):
        made = real(model, fused=fused, **kwargs)
        return Fused(made, 5e-3) if fused else made

    monkeypatch.setattr(verifying, "make_session", session)
    x = random_input(view.image.shape(4))
    assert verify(view.model, view.imported.module, view.image.name, x) > 1e-4
    tampered = onnx.ModelProto()
    tampered.CopyFrom(view.model)
    weight = next(i for i in tampered.graph.initializer if numpy_helper.to_array(i).ndim == 4)
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.01, weight.name))
    with pytest.raises(OnnxpruneError, match="differ by"):
        verify(tampered, view.imported.module, view.image.name, x)


def test_fusion_explains_only_what_the_plain_kernels_confirm() -> None:
    from onnxprune.stages.verify import fusion_explains

    ours = np.linspace(0, 1, 50)
    assert fusion_explains(ours + 5e-3, ours, ours, None, 1.0)  # plain agrees, fused near it
    assert not fusion_explains(ours + 5e-2, ours, ours, None, 1.0)  # fused too far from plain
    assert not fusion_explains(ours + 5e-3, ours + 5e-3, ours, None, 1.0)  # the plain kernels disagree too
