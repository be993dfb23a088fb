"""Tracing rules for ops that work along an axis: channels pass where the op stays within each
channel, and are blocked (with the reason) where it mixes them."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import GraphBuilder

from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load


def _groups_around(op: str, **attrs):
    """Conv → op → Conv; the group between the two convs, and the flops of the op."""
    g = GraphBuilder()
    a = g.conv("x", 3, 8)
    inputs = [a]
    if op == "CumSum":
        inputs.append(g.init(np.array(attrs.pop("axis"), np.int64)))
    mid = g.node(op, inputs, **attrs)
    out = g.conv(mid, 8, 4)
    analysis = analyze_groups(load(g.build([out])))
    producer = next(gr for gr in analysis.groups if gr.channels == 8)
    flops = next(n.flops for n in analysis.cost.nodes if n.op_type == op)
    return producer, flops


@pytest.mark.parametrize("op, attrs", [
    ("LRN", {"size": 3}),
    ("LpNormalization", {"axis": 1}),
    ("MeanVarianceNormalization", {"axes": [1, 2, 3]}),
    ("CumSum", {"axis": 1}),
])
def test_ops_that_mix_channels_block_them_with_a_reason(op: str, attrs: dict) -> None:
    group, flops = _groups_around(op, **attrs)
    assert not group.prunable and any(op in reason for reason in group.blocked)
    assert flops > 0


@pytest.mark.parametrize("op, attrs", [
    ("LpNormalization", {"axis": 3}),
    ("MeanVarianceNormalization", {"axes": [2, 3]}),  # per sample and channel
    ("CumSum", {"axis": 2}),
])
def test_ops_that_work_within_each_channel_pass_channels_through(op: str, attrs: dict) -> None:
    group, flops = _groups_around(op, **attrs)
    assert group.prunable and flops > 0
