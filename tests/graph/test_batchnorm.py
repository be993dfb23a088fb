"""BatchNorm added for fine-tuning a model whose exporter folded it, and folded back."""

from __future__ import annotations

import numpy as np
from conftest import SAMPLES
from graphs import GraphBuilder

from onnxprune.graph.batchnorm import fold_inserted, insert_batchnorm, needs_batchnorm
from onnxprune.graph.flops import count
from onnxprune.graph.load import load
from onnxprune.graph.nodes import is_inserted
from onnxprune.graph.runtime import run_model
from onnxprune.graph.shapes import probe_shapes
from onnxprune.stages.calibration import calibrate


def _folded_chain():
    """conv → relu → conv → relu → global pool → conv head: BN folded away everywhere."""
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    a = g.node("Relu", [g.conv("x", 3, 6)])
    b = g.node("Relu", [g.conv(a, 6, 6, bias=False)])
    head = g.conv(g.node("GlobalAveragePool", [b]), 6, 5, k=1)
    return g.build([head])


def _with_identity_bn(loaded, x):
    shapes = probe_shapes(loaded.model, loaded.image)
    convs = needs_batchnorm(loaded.model, shapes)
    stats = calibrate(loaded.model, loaded.image.name, x, [c.output[0] for c in convs], shapes=shapes)
    return convs, insert_batchnorm(loaded.model, convs, stats.mean, stats.var)


def test_a_folded_model_gets_identity_batchnorm_on_its_inner_convs_only() -> None:
    loaded = load(_folded_chain())
    x = np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32)
    convs, with_bn = _with_identity_bn(loaded, x)
    assert len(convs) == 2  # the 1×1 head on a pooled map gets none
    assert sum(is_inserted(n) for n in with_bn.graph.node) == 2
    before, after = run_model(loaded.model, {"x": x})[0], run_model(with_bn, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)
    # costed as what it becomes: the bias the bias-free conv gains when it is folded back
    folded = fold_inserted(with_bn)
    assert count(with_bn, probe_shapes(with_bn, loaded.image)).flops == count(folded, probe_shapes(
        folded, loaded.image)).flops > count(loaded.model, probe_shapes(loaded.model, loaded.image)).flops


def test_inserted_batchnorm_folds_back_into_its_conv_exactly() -> None:
    loaded = load(_folded_chain())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 3, 8, 8)).astype(np.float32)
    _, with_bn = _with_identity_bn(loaded, x)
    for init in with_bn.graph.initializer:  # as if fine-tuning had moved the BatchNorm
        if "onnxprune_bn" in init.name:
            from onnx import numpy_helper

            value = numpy_helper.to_array(init) * rng.uniform(0.5, 1.5, init.dims).astype(np.float32)
            init.CopyFrom(numpy_helper.from_array(value, init.name))
    folded = fold_inserted(with_bn)
    assert [n.op_type for n in folded.graph.node] == [n.op_type for n in loaded.model.graph.node]
    assert not any("onnxprune_bn" in i.name for i in folded.graph.initializer)
    expected = run_model(with_bn, {"x": x})[0]
    np.testing.assert_allclose(run_model(folded, {"x": x})[0], expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_model_that_keeps_its_batchnorm_gets_none() -> None:
    loaded = load(SAMPLES / "digits_mobilenet.onnx")  # its squeeze-excite convs lack BN on purpose
    assert needs_batchnorm(loaded.model, probe_shapes(loaded.model, loaded.image)) == []
