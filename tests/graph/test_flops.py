from __future__ import annotations

import pytest
from graphs import GraphBuilder
from zoo import TESTED, onnx_tool_macs

from onnxprune.graph.flops import count
from onnxprune.graph.load import load
from onnxprune.graph.shapes import probe_shapes


def _cost(model):
    loaded = load(model)
    return count(loaded.model, probe_shapes(loaded.model, loaded.image))


def test_conv_macs_count_input_channels_per_group_and_bias() -> None:
    g = GraphBuilder(input_shape=(1, 4, 8, 8))
    y = g.conv("x", 4, 8, k=3, group=2, bias=True)  # out 8×8×8, 2 in-ch per group, 3×3 kernel
    cost = _cost(g.build([y]))
    (conv,) = [n for n in cost.nodes if n.op_type == "Conv"]
    assert conv.macs == 8 * 8 * 8 * (2 * 9 + 1)
    assert conv.flops == 2 * conv.macs
    assert conv.params == 8 * 2 * 9 + 8


def test_gemm_macs_use_transposed_a() -> None:
    g = GraphBuilder(input_shape=(1, 4, 2, 2))
    flat = g.node("Flatten", [g.conv("x", 4, 4, k=1, bias=False)])  # (1, 16)
    t = g.node("Transpose", [flat], perm=[1, 0])  # (16, 1)
    y = g.node("Gemm", [t, g.rand(16, 5)], transA=1)  # (1, 5), K = 16
    cost = _cost(g.build([y]))
    (gemm,) = [n for n in cost.nodes if n.op_type == "Gemm"]
    assert gemm.macs == 5 * 16


def test_matmul_and_conv_transpose_macs() -> None:
    g = GraphBuilder(input_shape=(1, 4, 4, 4))
    up = g.node("ConvTranspose", ["x", g.rand(4, 2, 2, 2)], kernel_shape=[2, 2], strides=[2, 2])
    y = g.node("MatMul", [up, g.rand(8, 3)])  # (1, 2, 8, 8) @ (8, 3)
    cost = _cost(g.build([y]))
    by_op = {n.op_type: n for n in cost.nodes}
    assert by_op["ConvTranspose"].macs == (4 * 4 * 4) * (2 * 2 * 2)
    assert by_op["MatMul"].macs == (2 * 8 * 3) * 8


def test_elementwise_ops_cost_one_flop_per_output_and_data_movement_none() -> None:
    g = GraphBuilder(input_shape=(1, 4, 8, 8))
    c = g.conv("x", 4, 4, k=1, bias=False)
    r = g.node("Relu", [c])
    t = g.node("Transpose", [r], perm=[0, 2, 3, 1])
    cost = _cost(g.build([t]))
    by_op = {n.op_type: n for n in cost.nodes}
    assert by_op["Relu"].flops == 4 * 8 * 8 and by_op["Relu"].macs == 0
    assert by_op["Transpose"].flops == 0
    assert cost.flops == 2 * (4 * 8 * 8 * 4) + 4 * 8 * 8


@pytest.mark.slow
@pytest.mark.parametrize("name, exporter, dynamic", TESTED)
def test_macs_agree_with_onnx_tool_within_one_percent(zoo_model, name: str, exporter: str, dynamic: bool) -> None:
    loaded = load(zoo_model(name, exporter, dynamic))
    ours = count(loaded.model, probe_shapes(loaded.model, loaded.image)).macs
    theirs = onnx_tool_macs(loaded)
    assert abs(ours - theirs) <= 0.01 * theirs, (ours, theirs)
