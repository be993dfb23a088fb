"""Each coupling rule on a hand-built graph, with the expected groups written out."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import GraphBuilder
from pruning_checks import check_random_slice

from onnxprune.graph.groups import GroupAnalysis, analyze_groups
from onnxprune.graph.load import load


def _analyze(model) -> GroupAnalysis:
    return analyze_groups(load(model))


def _members(a: GroupAnalysis, initializer: str, axis: int) -> tuple[int, ...]:
    (slot,) = [s for s in a.slots if s.initializer == initializer and s.axis == axis]
    return slot.segments


def _weight(g: GraphBuilder, conv_out: str) -> str:
    node = next(n for n in g.nodes if n.output[0] == conv_out)
    return node.input[1]


def test_conv_bn_relu_conv_is_one_group_with_every_member() -> None:
    g = GraphBuilder()
    a = g.conv("x", 3, 8, bias=True)
    bn = g.bn(a, 8)
    b = g.conv(g.node("Relu", [bn]), 8, 4)
    a_ = _analyze(g.build([b]))
    (gid,) = _members(a_, _weight(g, a), 0)
    bn_node = next(n for n in g.nodes if n.op_type == "BatchNormalization")
    assert all(_members(a_, name, 0) == (gid,) for name in bn_node.input[1:])
    assert _members(a_, _weight(g, b), 1) == (gid,)
    assert a_.group(gid).prunable and a_.group(gid).channels == 8
    # b's output reaches the graph output: blocked, and says so
    (out_gid,) = _members(a_, _weight(g, b), 0)
    assert "graph output" in a_.group(out_gid).blocked[0]


def test_residual_add_merges_producers_into_one_group() -> None:
    g = GraphBuilder()
    stem = g.conv("x", 3, 8)
    branch = g.conv(g.node("Relu", [stem]), 8, 8)
    added = g.node("Add", [stem, branch])
    head = g.conv(added, 8, 2)
    a = _analyze(g.build([head]))
    assert _members(a, _weight(g, stem), 0) == _members(a, _weight(g, branch), 0)
    assert _members(a, _weight(g, head), 1) == _members(a, _weight(g, stem), 0)
    assert len(a.prunable) == 1


def test_concat_places_each_input_group_at_its_offset() -> None:
    g = GraphBuilder()
    left, right = g.conv("x", 3, 4), g.conv("x", 3, 6)
    cat = g.node("Concat", [left, right], axis=1)
    head = g.conv(cat, 10, 2)
    a = _analyze(g.build([head]))
    (lg,), (rg,) = _members(a, _weight(g, left), 0), _members(a, _weight(g, right), 0)
    slot = next(s for s in a.slots if s.initializer == _weight(g, head) and s.axis == 1)
    assert slot.segments == (lg, rg) and slot.sizes == (4, 6)


def test_depthwise_conv_joins_producer_group_and_changes_group_attribute() -> None:
    g = GraphBuilder()
    expand = g.conv("x", 3, 8, k=1)
    dw = g.conv(expand, 8, 8, k=3, group=8)
    project = g.conv(dw, 8, 4, k=1)
    a = _analyze(g.build([project]))
    (gid,) = _members(a, _weight(g, expand), 0)
    assert _members(a, _weight(g, dw), 0) == (gid,)
    assert _members(a, _weight(g, project), 1) == (gid,)
    assert [(attr.name, attr.segments) for attr in a.attributes] == [("group", (gid,))]


def test_grouped_conv_blocks_with_a_reason() -> None:
    g = GraphBuilder()
    a0 = g.conv("x", 3, 8)
    grouped = g.conv(a0, 8, 8, group=2)
    a = _analyze(g.build([g.conv(grouped, 8, 2)]))
    (gid,) = _members(a, _weight(g, a0), 0)
    assert "grouped Conv (group=2)" in a.group(gid).blocked[0]


def test_squeeze_excite_mul_merges_gate_with_features() -> None:
    g = GraphBuilder()
    feat = g.conv("x", 3, 8)
    pooled = g.node("GlobalAveragePool", [feat])
    squeeze = g.conv(g.node("Relu", [g.conv(pooled, 8, 2, k=1)]), 2, 8, k=1)
    gated = g.node("Mul", [feat, g.node("Sigmoid", [squeeze])])
    head = g.conv(gated, 8, 2)
    a = _analyze(g.build([head]))
    (gid,) = _members(a, _weight(g, feat), 0)
    assert _members(a, _weight(g, squeeze), 0) == (gid,)
    assert _members(a, _weight(g, head), 1) == (gid,)
    reduce_node = next(n for n in g.nodes if n.op_type == "Conv" and n.input[0] == pooled)
    assert _members(a, reduce_node.input[1], 1) == (gid,)


def test_flatten_to_gemm_slices_hw_rows_per_channel() -> None:
    g = GraphBuilder(input_shape=(1, 3, 4, 4))
    feat = g.conv("x", 3, 5)
    flat = g.node("Flatten", [g.node("Relu", [feat])], axis=1)
    fc = g.node("Gemm", [flat, g.rand(3, 5 * 16), g.rand(3)], transB=1)
    a = _analyze(g.build([fc]))
    (gid,) = _members(a, _weight(g, feat), 0)
    fc_weight = next(n for n in g.nodes if n.op_type == "Gemm").input[1]
    slot = next(s for s in a.slots if s.initializer == fc_weight and s.axis == 1)
    assert (slot.segments, slot.outer, slot.inner) == ((gid,), 1, 16)


def test_reshape_constant_carrying_the_channel_count_is_recorded() -> None:
    g = GraphBuilder(input_shape=(1, 3, 4, 4))
    feat = g.conv("x", 3, 6)
    pooled = g.node("GlobalAveragePool", [feat])
    shape = g.init(np.array([1, 6], np.int64))
    fc = g.node("Gemm", [g.node("Reshape", [pooled, shape]), g.rand(6, 2)])
    a = _analyze(g.build([fc]))
    (gid,) = _members(a, _weight(g, feat), 0)
    assert [(c.initializer, c.index, c.segments, c.factor) for c in a.shape_constants] == [(shape, 1, (gid,), 1)]
    check_random_slice(load(g.build([fc])), drop=0.5)


def test_split_on_channels_follows_only_whole_segments() -> None:
    g = GraphBuilder()
    left, right = g.conv("x", 3, 4), g.conv("x", 3, 6)
    cat = g.node("Concat", [left, right], axis=1)
    a_out, b_out = g.node("Split", [cat, g.init(np.array([4, 6], np.int64))], n_out=2, axis=1)
    model = g.build([g.conv(a_out, 4, 2), g.conv(b_out, 6, 2)])
    a = _analyze(model)
    assert all(a.group(gid).prunable for gid in _members(a, _weight(g, left), 0) + _members(a, _weight(g, right), 0))
    # a split that cuts through a producer's channels blocks them
    g2 = GraphBuilder()
    whole = g2.conv("x", 3, 10)
    p, q = g2.node("Split", [whole, g2.init(np.array([3, 7], np.int64))], n_out=2, axis=1)
    a2 = _analyze(g2.build([g2.conv(p, 3, 2), g2.conv(q, 7, 2)]))
    (gid,) = _members(a2, _weight(g2, whole), 0)
    assert "splits the channel axis" in a2.group(gid).blocked[0]


def test_transpose_to_channels_last_layernorm_is_followed_and_inexact() -> None:
    g = GraphBuilder()
    feat = g.conv("x", 3, 8)
    nhwc = g.node("Transpose", [feat], perm=[0, 2, 3, 1])
    normed = g.node("LayerNormalization", [nhwc, g.rand(8), g.rand(8)], axis=-1)
    mlp = g.node("MatMul", [normed, g.rand(8, 6)])
    back = g.node("Transpose", [mlp], perm=[0, 3, 1, 2])
    model = g.build([g.conv(back, 6, 2)])
    a = _analyze(model)
    (gid,) = _members(a, _weight(g, feat), 0)
    assert a.group(gid).prunable and not a.group(gid).exact
    matmul_weight = next(n for n in g.nodes if n.op_type == "MatMul").input[1]
    assert _members(a, matmul_weight, 0) == (gid,)
    (hidden,) = _members(a, matmul_weight, 1)
    assert a.group(hidden).prunable and a.group(hidden).exact
    check_random_slice(load(model), drop=0.5)


def test_channels_from_graph_input_are_never_pruned() -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    added = g.node("Add", ["x", g.conv("x", 3, 3)])
    a = _analyze(g.build([g.conv(added, 3, 2)]))
    assert not a.prunable


def test_flops_per_channel_is_what_one_channel_costs() -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    feat = g.conv("x", 3, 8, k=3, bias=False)
    head = g.conv(g.node("Relu", [feat]), 8, 2, k=1, bias=False)
    a = _analyze(g.build([head]))
    (gid,) = _members(a, _weight(g, feat), 0)
    # one channel: its 3×3×3 filter over 64 positions, its Relu, and one input column of head
    assert a.group(gid).flops_per_channel == 2 * 64 * 27 + 64 + 2 * 64 * 2
    assert a.group(gid).params_per_channel == 27 + 2


@pytest.mark.slow
@pytest.mark.parametrize("name, exporter", [("resnet18", "torchscript"), ("mobilenet_v3_small", "torchscript")])
def test_most_flops_are_prunable_on_standard_cnns(zoo_model, name: str, exporter: str) -> None:
    assert analyze_groups(load(zoo_model(name, exporter))).prunable_flops_share() >= 0.95
