from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

from onnxprune.graph.flops import count
from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.graph.shapes import probe_shapes
from onnxprune.graph.slice import slice_model
from onnxprune.stages.select import floor_for, select


def _setup(name: str = "digits_resnet.onnx"):
    loaded = load(SAMPLES / name)
    analysis = analyze_groups(loaded)
    rng = np.random.default_rng(0)
    scores = {g.id: rng.random(g.channels) for g in analysis.prunable}
    return loaded, analysis, scores


def test_selection_meets_the_target_exactly_and_predicts_the_result() -> None:
    loaded, analysis, scores = _setup()
    target = int(0.5 * analysis.cost.flops)
    floors = {g.id: floor_for(g.channels, 1, 1) for g in analysis.prunable}
    chosen = select(loaded.model, analysis, scores, target, floors)
    assert chosen.reached and chosen.flops <= target
    sliced = slice_model(loaded.model, analysis, chosen.keep)
    assert count(sliced, probe_shapes(sliced, loaded.image)).flops == chosen.flops
    # as close as one more channel allows: keeping one more of any shrunk group overshoots
    assert chosen.flops > target - max(g.flops_per_channel for g in analysis.prunable) * 2


def test_lowest_scores_go_first_and_floors_hold() -> None:
    loaded, analysis, scores = _setup()
    floors = {g.id: 8 for g in analysis.prunable}
    chosen = select(loaded.model, analysis, scores, int(0.001 * analysis.cost.flops), floors)
    assert not chosen.reached
    for gid, keep in chosen.keep.items():
        assert len(keep) >= 8
        dropped = np.setdiff1d(np.arange(len(scores[gid])), keep)
        assert scores[gid][dropped].max(initial=-1) <= scores[gid][keep].min()


def test_round_to_keeps_widths_multiples_of_n() -> None:
    loaded, analysis, scores = _setup()
    floors = {g.id: floor_for(g.channels, 1, 16) for g in analysis.prunable}
    chosen = select(loaded.model, analysis, scores, int(0.4 * analysis.cost.flops), floors, round_to=16)
    assert chosen.keep and all(len(k) % 16 == 0 for k in chosen.keep.values())


class _SlowGroup:
    """A device on which one group's FLOPs take ``factor`` times as long as everyone else's."""

    def __init__(self, analysis, slow: int, factor: float) -> None:
        group = analysis.group(slow)
        self.tensor = next(name for name, t in analysis.tensors.items() if t.segments == (slow,) and t.axis == 1)
        self.extra = (factor - 1) * group.flops_per_channel
        self.factor = factor

    def predict(self, cost, shapes) -> float:
        return 1e-9 * (cost.flops + self.extra * shapes[self.tensor][1])


def test_a_slow_layer_weighs_its_flops_at_most_twice() -> None:
    """Under a FLOPs target, a group whose FLOPs are slow costs more per channel, but at most
    SLOWNESS_BOUND times its FLOPs: a cheap layer cannot go first merely for being slow per FLOP."""
    from onnxprune.stages.select import SLOWNESS_BOUND, channel_costs
    loaded, analysis, _ = _setup()
    slow = min(analysis.prunable, key=lambda g: g.flops_per_channel).id
    steps = {g.id: 1 for g in analysis.prunable}
    costs = channel_costs(loaded.model, analysis, _SlowGroup(analysis, slow, 50.0), steps, per_flop=True)
    flops = {g.id: g.flops_per_channel for g in analysis.prunable}
    assert costs[slow] == pytest.approx(SLOWNESS_BOUND * flops[slow])  # 50 times slower per FLOP, bounded at twice
    others = [gid for gid in costs if gid != slow]
    assert all(costs[gid] == pytest.approx(flops[gid]) for gid in others)  # the median's speed: their FLOPs as they are
    ms = channel_costs(loaded.model, analysis, _SlowGroup(analysis, slow, 50.0), steps, per_flop=False)
    assert ms[slow] > ms[others[0]] * flops[slow] / flops[others[0]] * 10  # unbounded: the milliseconds
