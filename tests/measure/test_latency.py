from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import SAMPLES

import onnxprune.measure.latency as latency
from onnxprune import prune
from onnxprune.graph.flops import count
from onnxprune.graph.groups import analyze_groups, predict_cost, predict_shapes
from onnxprune.graph.load import load
from onnxprune.measure.latency import LatencyModel, LayerTable, LocalCache, measure_granularity, measure_latency
from onnxprune.stages.select import floor_for, group_step, select


def test_layer_table_interpolates_on_its_grid_and_scales_with_macs_outside() -> None:
    table = LayerTable("conv", "w", False, (8, 16), (8, 16), ((1.0, 2.0), (2.0, 4.0)))
    assert table.at(12, 12) == pytest.approx(2.25)
    assert table.at(32, 16) == pytest.approx(8.0)
    assert table.at(4, 8) == pytest.approx(0.5)
    depthwise = LayerTable("dw", "w", True, (8, 16), (), ((1.0,), (3.0,)))
    assert depthwise.at(12, 12) == pytest.approx(2.0)
    assert depthwise.at(4, 4) == pytest.approx(0.5)


def test_whole_graph_fit_is_exact_at_the_original_and_may_take_off_overhead() -> None:
    scale, offset = latency._fit(np.array([8.0, 6.0, 4.0]), np.array([5.0, 3.5, 2.0]))
    assert offset + scale * 8.0 == pytest.approx(5.0)
    assert scale == pytest.approx(0.75) and offset < 0
    # a fit that says latency grows as layers shrink falls back to proportional
    assert latency._fit(np.array([8.0, 4.0]), np.array([2.0, 3.0])) == (0.25, 0.0)


def test_granularity_is_measured_once_then_read_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    step = measure_granularity(LocalCache("cpu", 1))
    cached = json.loads((latency.cache_dir() / "latency.json").read_text())
    assert step in cached.values()

    def no_timing(*args, **kwargs):
        raise AssertionError("timed again instead of reading the cache")

    monkeypatch.setattr(latency, "time_interleaved", no_timing)
    assert measure_granularity(LocalCache("cpu", 1)) == step


def test_latency_model_predicts_the_measured_original() -> None:
    loaded = load(SAMPLES / "digits_resnet.onnx")
    analysis = analyze_groups(loaded)
    model = measure_latency(loaded.model, analysis, loaded.image, LocalCache("cpu", 1), granularity=8)
    convs = [n.name for n in loaded.model.graph.node if n.op_type == "Conv"]
    assert set(model.layers) <= set(convs) and len(model.layers) >= len(convs) - 1
    shapes = predict_shapes(analysis, {g.id: max(1, g.channels // 2) for g in analysis.prunable})
    assert model.predict(count(loaded.model, shapes), shapes) < model.predict(analysis.cost, analysis.shapes)


def _fake_latency(model, analysis, slow_node: str) -> LatencyModel:
    """Every conv costs 1 ms per MMAC, except one that costs 20: a memory-bound layer."""
    layers = {}
    for n in analysis.cost.nodes:
        if n.op_type == "Conv" and n.macs:
            rate = 20.0 if n.name == slow_node else 1.0
            weight = next(node.input[1] for node in model.graph.node if node.name == n.name)
            out, inp = analysis.shapes[weight][:2]
            layers[n.name] = LayerTable(n.name, weight, False, (out,), (inp,), ((rate * n.macs / 1e6,),))
    return LatencyModel("cpu", 1, 1, 1, layers, {}, 1e-6, 1.0, 0.0, 0.0)


def test_latency_costs_steer_removal_to_slow_layers_and_targets_hold() -> None:
    loaded = load(SAMPLES / "digits_vgg.onnx")
    analysis = analyze_groups(loaded)
    scores = {g.id: np.ones(g.channels) for g in analysis.prunable}  # saliency cannot decide
    floors = {g.id: floor_for(g.channels, 1, 1) for g in analysis.prunable}
    macs = {n.name: n.macs for n in analysis.cost.nodes}
    convs = {n.name for n in analysis.cost.nodes if n.op_type == "Conv"}
    slow = min((p for g in analysis.prunable for p in g.producers if p in convs), key=macs.get)  # cheap in FLOPs
    fake = _fake_latency(loaded.model, analysis, slow)
    target = int(0.9 * analysis.cost.flops)
    by_flops = select(loaded.model, analysis, scores, target, floors, flops_weight=1.0)
    by_latency = select(loaded.model, analysis, scores, target, floors, flops_weight=1.0, latency=fake)

    def slow_macs(chosen) -> int:
        widths = {gid: len(k) for gid, k in chosen.keep.items()}
        return next(n.macs for n in predict_cost(loaded.model, analysis, widths).nodes if n.name == slow)

    assert slow_macs(by_latency) < slow_macs(by_flops)  # the slow layer loses more of its input or output

    goal = 0.5 * fake.predict(analysis.cost, analysis.shapes)
    chosen = select(loaded.model, analysis, scores, analysis.cost.flops, floors, latency=fake, target_latency_ms=goal)
    assert chosen.reached and chosen.latency_ms <= goal


def test_target_latency_alone_prunes_and_is_confirmed_by_measuring() -> None:
    result = prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", target_latency=0.8, rounds=2, round_steps=1,
                   epochs=0.2, calibration_images=32, bench=False, bench_runs=5, max_drop=100)
    report = result.report
    assert report.settings["target_flops"] == 1.0 and report.settings["target_latency"] == 0.8
    assert report.hardware_aware.predicted_fraction <= 0.8
    measured = report.latency["timings"][1]["median_ms"] / report.latency["timings"][0]["median_ms"]
    spread = max(t["spread"] for t in report.latency["timings"])
    assert report.latency["target"] == 0.8 and report.latency["target_met"] == (measured <= 0.8 * (1 + spread))


def test_group_step_halves_only_for_groups_narrower_than_one_step() -> None:
    assert [group_step(c, 16) for c in (512, 64, 32, 24, 16, 12, 3)] == [16, 16, 16, 16, 16, 8, 2]


def test_auto_widths_stay_multiples_of_the_measured_step_even_after_the_lossless_pass() -> None:
    result = prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", 0.5, rounds=1, round_steps=1, epochs=0.1,
                   calibration_images=32, bench=False, max_drop=100)
    hw = result.report.hardware_aware
    step = hw.round_to
    assert step in {c["step"] for c in hw.step_candidates} and hw.step_reason  # chosen by timing, and said why
    before, after = result.report.widths.before, result.report.widths.after
    for name, width in after.items():
        own = group_step(before[name], step)  # narrow groups get a finer step, never an odd one
        if before[name] % own == 0 and width != before[name]:
            assert width % own == 0, (name, width, own)


def test_below_the_measured_widths_the_prediction_scales_down_and_stays_positive() -> None:
    table = LayerTable("conv", "w", False, (8, 16), (8, 16), ((1.0, 2.0), (2.0, 4.0)))
    # fitted on layers' sums 4.0 (original) … 1.0 (narrowest measured); the line alone is 0 at 0.5
    model = LatencyModel("cpu", 1, 1, 1, {"conv": table}, {}, 0.0, 2.0, -1.0, 7.0, narrowest=1.0)

    def at(out: int, inp: int) -> float:
        cost = type("Cost", (), {"nodes": [type("Node", (), {"name": "conv", "macs": 1})()]})()
        return model.predict(cost, {"w": (out, inp, 3, 3)})

    assert at(16, 16) == pytest.approx(7.0) and at(8, 8) == pytest.approx(1.0)  # on the line
    assert at(4, 4) == pytest.approx(0.25)  # a quarter of the narrowest's layers: a quarter of its time
    assert at(4, 2) == pytest.approx(0.125)  # the line would say -0.75


def test_a_fit_that_runs_below_the_narrowest_measurement_falls_back_to_proportional() -> None:
    # anchored at the original (8 → 5 ms), the least-squares slope says 0.27 ms where 0.6 was measured
    assert latency._fit(np.array([8.0, 4.0, 2.0]), np.array([5.0, 0.5, 0.6])) == (5.0 / 8.0, 0.0)
