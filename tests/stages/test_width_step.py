from __future__ import annotations

import json

import pytest
from conftest import SAMPLES

import onnxprune.measure.latency as latency
from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.measure.latency import LocalCache
from onnxprune.stages.width_step import NOISE_FLOOR, StepCandidate, _candidates, _decide, choose_step


def _candidate(step: int, efficiency: float) -> StepCandidate:
    return StepCandidate(step, 0.3, 1.0, 1.0, efficiency)


def test_the_most_efficient_step_wins_unless_a_coarser_one_is_within_the_noise() -> None:
    clear = (_candidate(8, 0.70), _candidate(16, 0.95), _candidate(32, 0.80))
    assert _decide(clear, NOISE_FLOOR, 8).step == 16
    tied = (_candidate(8, 0.70), _candidate(16, 0.95), _candidate(32, 0.94))
    choice = _decide(tied, NOISE_FLOOR, 8)
    assert choice.step == 32 and "coarser" in choice.reason
    # a finer step that is clearly better is not given up for a coarser one
    assert _decide((_candidate(8, 0.99), _candidate(16, 0.80)), NOISE_FLOOR, 16).step == 8


def test_noise_is_the_spread_of_the_repeats_and_efficiency_is_measured_against_the_original() -> None:
    runs = [[10.0, 5.0, 4.0], [10.0, 5.0, 4.4], [10.0, 5.0, 4.2]]  # original, step 8, step 16
    candidates, noise = _candidates([(8, 0.3, 5.5), (16, 0.28, 4.5)], 10.0, runs)
    assert noise == pytest.approx((4.4 - 4.0) / 4.2 / 2)
    assert candidates[0].efficiency == pytest.approx(10.0 / 5.0 * 0.3)
    assert candidates[1].measured_ms == pytest.approx(4.2)
    # without timings (a table from another device) the prediction decides
    predicted, floor = _candidates([(8, 0.3, 5.0)], 10.0, None)
    assert floor == NOISE_FLOOR and predicted[0].measured_ms is None
    assert predicted[0].efficiency == pytest.approx(10.0 / 5.0 * 0.3)


def test_steps_are_tried_on_the_model_timed_once_and_then_read_from_the_cache(monkeypatch) -> None:
    loaded = load(SAMPLES / "digits_resnet.onnx")
    analysis = analyze_groups(loaded)
    model, choice = choose_step(loaded.model, analysis, loaded.image, LocalCache("cpu", 1), 8, 0.3, 1, 0.1, 0)
    assert choice.step in {c.step for c in choice.candidates}
    assert all(c.measured_ms and c.flops_fraction <= 0.3 for c in choice.candidates)
    assert model.original_ms > 0
    cached = json.loads((latency.cache_dir() / "latency.json").read_text())
    assert any(isinstance(v, list) and len(v) == 3 for v in cached.values())  # three repeats kept

    def no_timing(*args, **kwargs):
        raise AssertionError("timed again instead of reading the cache")

    monkeypatch.setattr(latency, "time_interleaved", no_timing)
    again = choose_step(loaded.model, analysis, loaded.image, LocalCache("cpu", 1), 8, 0.3, 1, 0.1, 0)[1]
    assert again == choice
