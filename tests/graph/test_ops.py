"""The per-op table: every place that asks what an op means for pruning reads the same row."""

from __future__ import annotations

from onnxprune.graph.flow import HANDLERS
from onnxprune.graph.ops import OPS, Cost, Tracing, rule


def test_every_way_of_tracing_has_its_handler_and_is_used() -> None:
    assert set(HANDLERS) == set(Tracing) and all(callable(h) for h in HANDLERS.values())
    assert {r.trace for r in OPS.values() if r.trace} == set(Tracing)


def test_every_op_that_costs_flops_is_traced() -> None:
    """The drift this table ended: ops counted by flops.py but unknown to tracing."""
    assert [op for op, r in OPS.items() if r.cost is not Cost.FREE and r.trace is None] == []


def test_an_unknown_op_blocks_its_channels_and_costs_nothing() -> None:
    assert rule("NoSuchOp").trace is None and rule("NoSuchOp").cost is Cost.FREE
