from __future__ import annotations

import numpy as np
from conftest import SAMPLES

from onnxprune.flops import count
from onnxprune.groups import analyze_groups
from onnxprune.load import load
from onnxprune.select import floor_for, select
from onnxprune.shapes import probe_shapes
from onnxprune.slice import slice_model


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
