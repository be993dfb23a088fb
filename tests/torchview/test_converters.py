"""Operators onnx2torch lacks, imported through our converters and compared with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import GraphBuilder

from onnxprune.graph.load import load
from onnxprune.torchview.importer import import_model


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


@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_lstm_imports_in_onnx_gate_order(direction: str) -> None:
    d = 2 if direction == "bidirectional" else 1
    g = GraphBuilder(input_shape=(5, 2, 4))  # (T, N, I)
    w, r, b = g.rand(d, 32, 4), g.rand(d, 32, 8), g.rand(d, 64)
    y, y_h, y_c = g.node("LSTM", ["x", w, r, b], n_out=3, hidden_size=8, direction=direction)
    _imports_recurrent(g.build([y, y_h, y_c]))


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru_imports_with_either_reset(linear_before_reset: int) -> None:
    g = GraphBuilder(input_shape=(5, 2, 4))
    w, r, b = g.rand(2, 24, 4), g.rand(2, 24, 8), g.rand(2, 48)
    h0 = g.rand(2, 2, 8)
    y = g.node("GRU", ["x", w, r, b, "", h0], hidden_size=8, direction="bidirectional",
               linear_before_reset=linear_before_reset)
    _imports_recurrent(g.build([y]))


def _imports_recurrent(model) -> None:
    # the graph has no Conv (load refuses those), so convert and compare directly
    from onnxprune.torchview.importer import _convert, compare_with_onnxruntime

    x = np.random.default_rng(0).standard_normal((5, 2, 4)).astype(np.float32)
    diff, scale = compare_with_onnxruntime(_convert(model), model, {"x": x})
    assert diff <= 1e-5 * max(scale, 1)


def test_the_conv_feeding_an_lstm_is_prunable_with_its_input_columns(tmp_path) -> None:
    from crnn import export_crnn

    from onnxprune.graph.groups import analyze_groups

    analysis = analyze_groups(load(export_crnn(tmp_path / "crnn.onnx")))
    lstm_columns = [s for s in analysis.slots if s.role == "consumer" and s.axis == 2]
    assert len(lstm_columns) == 1 and lstm_columns[0].inner == 4  # one channel is 4 rows of features
    assert analysis.group(lstm_columns[0].segments[0]).prunable
