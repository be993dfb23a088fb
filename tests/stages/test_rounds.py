"""The rounds, stage by stage: how many, what each aims at, and the latency correction."""

from __future__ import annotations

import pytest
from conftest import SAMPLES

from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.options import resolve
from onnxprune.stages.prepare import prepare
from onnxprune.stages.latency_correction import correct_latency, corrected_goal
from onnxprune.stages.planner import plan_widths, planned_rounds
from onnxprune.stages.rounds import prune_in_rounds
from onnxprune.torchview.view import TorchView


def test_each_planned_round_removes_at_most_a_tenth_of_the_flops() -> None:
    assert planned_rounds(resolve(0.3, {})) == 7
    assert planned_rounds(resolve(0.95, {})) == 1
    assert planned_rounds(resolve(0.9, {"target_latency": 0.5})) == 5  # the stricter target sets the pace
    assert planned_rounds(resolve(0.3, {"rounds": 2})) == 2


def test_a_target_below_every_floor_is_refused_before_any_round() -> None:
    from onnxprune.errors import OnnxpruneError

    o = resolve(0.01, {"round_to": 1, "bench": False})
    run = prepare(load(SAMPLES / "digits_vgg.onnx"), SAMPLES / "digits", o, lambda *a: None)
    with pytest.raises(OnnxpruneError, match="cannot be reached: with every prunable group at its floor"):
        plan_widths(run, run.model.work_groups)


def test_a_latency_target_the_device_misses_gets_correction_rounds() -> None:
    # a fixed width step: the one --round-to auto times may, on a busy machine, be so coarse that
    # the rounds leave every group at its floor and no correction round can cut more
    o = resolve(None, dict(target_latency=0.7, rounds=2, round_steps=1, epochs=0, calibration_images=32,
                           round_to=8, bench=False, max_drop=100))
    run = prepare(load(SAMPLES / "digits_resnet.onnx"), SAMPLES / "digits", o, lambda *a: None)
    plan = plan_widths(run, run.model.work_groups)
    view, records, reached = prune_in_rounds(run, plan, TorchView.of(run.model.work.model, run.model.work.image))
    original_flops = plan.base.flops
    measured = []

    def fixed_cost_device(run, model) -> float:
        # half of the original's time does not shrink with FLOPs: pruned models measure slower
        # than any FLOPs-proportional prediction, as MobileNetV2 does on a CPU
        share = 0.5 + 0.5 * analyze_groups(load(model)).cost.flops / original_flops
        measured.append(share)
        return share

    assert reached and len(records) == 2
    correct_latency(run, plan, view, records, measure=fixed_cost_device)
    predicted = [r.latency_fraction_predicted for r in records]
    assert records[-1].round > 2 and measured[0] > 0.7  # the first check missed, so a correction round ran
    assert predicted[-1] < predicted[1]  # aiming lower than the rounds did
    assert measured[-1] < measured[0]  # each correction came nearer


def test_a_latency_correction_follows_the_line_through_what_was_measured() -> None:
    # measured falls 0.87× as fast as predicted (fixed costs): aim where that line meets the target
    assert corrected_goal([(1.0, 1.0), (0.30, 0.39)], 0.30) == pytest.approx(0.30 - 0.09 * 0.70 / 0.61)
    # points that do not slope down together are noise: scale by measured ÷ predicted
    assert corrected_goal([(0.30, 0.39), (0.25, 0.40)], 0.30) == pytest.approx(0.25 * 0.30 / 0.40)
    # a nearly flat line may not cut below half of that scaling
    assert corrected_goal([(1.0, 1.0), (0.8, 0.95)], 0.8) == pytest.approx(0.8 * 0.8 / 0.95 / 2)


