"""A run that cannot be had says so early, and says what can."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import GraphBuilder

from onnxprune import prune
from onnxprune.errors import QualityBudgetExceeded


def _fragile_classifier():
    """Random convs into ten strong logits: cutting most channels changes every answer. The last
    conv's output is pooled signed, not through a Relu: pooled Relu features are about the same for
    every input and one class won them all (200 of 200), so no cut could change an answer."""
    g = GraphBuilder(input_shape=("n", 3, 16, 16))
    h = g.conv(g.node("Relu", [g.conv("x", 3, 16)]), 16, 16)
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [h])])
    return g.build([g.node("Gemm", [pooled, g.rand(10, 16, scale=3.0), g.init(np.zeros(10, np.float32))],
                           transB=1)])


def test_a_round_far_beyond_the_budget_stops_the_run_and_names_the_share_that_held() -> None:
    rng = np.random.default_rng(0)
    # each input its own brightness per channel, so the answers differ between inputs (four classes)
    x = (rng.standard_normal((200, 3, 16, 16)) + 2 * rng.standard_normal((200, 3, 1, 1))).astype(np.float32)
    with pytest.raises(QualityBudgetExceeded, match="stopped there instead of fine-tuning on") as stopped:
        # without the least-squares refit, which repairs these random cuts (they would hold)
        prune(_fragile_classifier(), x, 0.2, rounds=4, round_steps=0, epochs=5, round_to=1, bench=False, max_drop=1,
              reconstruct=False)
    message = str(stopped.value)
    trajectory = stopped.value.report.trajectory
    held = [r for r in trajectory[1:] if r.quality_drop is not None and r.quality_drop <= 1]
    assert trajectory[-1].quality_drop > 20
    if held:
        assert f"--target-flops {held[-1].flops_fraction:.2f}" in message
    else:
        assert "no round held" in message
    assert "final fine-tuning" not in stopped.value.report.stage_times_s  # not spent on a lost cause
