"""Judging on the few images a user has: each held-out image also seen shifted, the original's
outputs on every view the reference, and intervals that draw whole images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxprune import prune
from onnxprune.data.sources import load_data
from onnxprune.graph.load import load
from onnxprune.measure.intervals import agreement_floor
from onnxprune.options import PruneOptions
from onnxprune.stages.prepare import JUDGED_ITEMS, MOST_VIEWS, judge_views

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
QUICK = dict(round_steps=1, epochs=0.1, calibration_images=16, round_to=1, bench=False, max_drop=100, rounds=1)


def _few_digits(count: int):
    loaded = load(SAMPLES / "digits_vgg.onnx")
    data = load_data(SAMPLES / "digits", loaded.image)
    return data.subset(np.random.default_rng(0).permutation(len(data))[:count])


def test_few_held_out_images_are_judged_with_their_views_and_the_interval_rests_on_the_images() -> None:
    # open-ended final fine-tuning: it chooses its stop on half the held-out images
    report = prune(SAMPLES / "digits_vgg.onnx", _few_digits(48), target_flops=0.7, **(QUICK | dict(epochs=None, time_budget=5))).report
    drop = report.quality.drop
    assert report.data.validation == 16  # 15 % of 48 would be 7
    assert drop.views == round(JUDGED_ITEMS / 16) and drop.items == 8  # the half no decision saw
    assert report.quality.validation_inputs == drop.items * drop.views
    assert drop.high - drop.low >= 2 * agreement_floor(8) - 1e-6  # not the width of 96 independent inputs


def test_labelled_or_plenty_of_images_are_judged_as_they_are() -> None:
    o = PruneOptions()
    assert judge_views(o, 500, False, 10**6, 1000) == 1
    assert judge_views(o, 16, True, 10**6, 1000) == 1  # a shift may move what a label names
    assert judge_views(o, 4, False, 10**6, 1000) == MOST_VIEWS
    assert judge_views(o, 16, False, 10**11, 1000) == 1  # a judgement would cost too much
    assert judge_views(PruneOptions(judge_views=3), 16, True, 10**6, 1000) == 3
