"""Properties of the slicer over random small graphs and random keep-sets (hypothesis).

For every graph the builder can draw — conv chains with BatchNorm, residual adds that tie groups
together, concatenations that split them, depthwise convs, a pooled classifier — and every
keep-set: slicing gives a valid model whose counted FLOPs, MACs and params are the predicted
ones, and where no normalization runs across channels, slicing equals zeroing the same channels
at their consumers.
"""

from __future__ import annotations

from graphs import GraphBuilder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pruning_checks import check_random_slice

from onnxprune.graph.load import load

BLOCKS = ("conv", "conv_bn", "residual", "concat", "depthwise", "pool")


def _build(blocks: list[tuple[str, int]], head: bool, seed: int):
    g = GraphBuilder((1, 3, 16, 16), seed=seed)
    x, c, side = g.conv("x", 3, 8), 8, 16
    for kind, width in blocks:
        if kind == "conv":
            x, c = g.node("Relu", [g.conv(x, c, width)]), width
        elif kind == "conv_bn":
            x, c = g.node("Relu", [g.bn(g.conv(x, c, width, bias=False), width)]), width
        elif kind == "residual":  # the add ties the block's output to its input's group
            x = g.node("Add", [x, g.conv(g.node("Relu", [g.conv(x, c, width)]), width, c)])
        elif kind == "concat":  # two producers' channels side by side on one axis
            x, c = g.node("Concat", [g.conv(x, c, width), g.conv(x, c, c)], axis=1), width + c
        elif kind == "depthwise":  # its output is its input's channels: one group through it
            x = g.node("Relu", [g.conv(x, c, c, group=c)])
        elif side > 2:
            x, side = g.node("MaxPool", [x], kernel_shape=[2, 2], strides=[2, 2]), side // 2
    if head:
        x = g.node("Gemm", [g.node("Flatten", [g.node("GlobalAveragePool", [x])]), g.rand(5, c), g.rand(5)],
                   transB=1)
    return g.build([x])


graphs = st.tuples(st.lists(st.tuples(st.sampled_from(BLOCKS), st.integers(2, 12)), min_size=1, max_size=5),
                   st.booleans(), st.integers(0, 2**16))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(graphs, st.floats(0.1, 0.9), st.integers(0, 2**16))
def test_slicing_is_valid_costs_what_was_predicted_and_equals_zeroing(graph, drop: float, seed: int) -> None:
    blocks, head, graph_seed = graph
    check_random_slice(load(_build(blocks, head, graph_seed)), drop=drop, seed=seed)
