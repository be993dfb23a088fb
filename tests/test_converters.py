"""Operators onnx2torch lacks, imported through our converters and compared with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import GraphBuilder

from onnxprune.importer import import_model
from onnxprune.load import load


def _imports_exactly(model) -> None:
    imported = import_model(load(model))  # raises if torch and onnxruntime disagree
    assert imported.max_abs_diff <= 1e-5


def test_reduce_mean_with_axes_input_opset18() -> None:
    g = GraphBuilder(opset=18)
    c = g.conv("x", 3, 4)
    axes = g.init(np.array([2, 3], np.int64))
    _imports_exactly(g.build([g.node("ReduceMean", [c, axes], keepdims=0)]))


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceSum", "ReduceL2"])
def test_other_reductions_opset18(op: str) -> None:
    g = GraphBuilder(opset=18)
    c = g.conv("x", 3, 4)
    _imports_exactly(g.build([g.node(op, [c, g.init(np.array([1], np.int64))], keepdims=1)]))


def test_reshape_with_allowzero_opset19() -> None:
    g = GraphBuilder(opset=19)
    c = g.conv("x", 3, 4)
    shape = g.init(np.array([0, -1], np.int64))
    _imports_exactly(g.build([g.node("Reshape", [c, shape], allowzero=0)]))
    g = GraphBuilder(opset=19)
    c = g.conv("x", 3, 4)
    shape = g.init(np.array([1, 4 * 64], np.int64))
    _imports_exactly(g.build([g.node("Reshape", [c, shape], allowzero=1)]))


def test_split_with_num_outputs_opset18() -> None:
    g = GraphBuilder(opset=18)
    c = g.conv("x", 3, 6)
    a, b = g.node("Split", [c], n_out=2, axis=1, num_outputs=2)
    _imports_exactly(g.build([g.node("Add", [a, b])]))


def test_average_pool_opset19_and_gelu_opset20() -> None:
    g = GraphBuilder(opset=20)
    c = g.conv("x", 3, 4)
    p = g.node("AveragePool", [c], kernel_shape=[2, 2], strides=[2, 2])
    _imports_exactly(g.build([g.node("Gelu", [p], approximate="tanh")]))


def test_conv_opset22_delegates_to_older_converter() -> None:
    g = GraphBuilder(opset=22)
    c = g.conv("x", 3, 4)
    _imports_exactly(g.build([g.node("MaxPool", [c], kernel_shape=[2, 2])], ir_version=10))
