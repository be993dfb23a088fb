from __future__ import annotations

import numpy as np
import pytest

from onnxprune.measure.metrics import compare_outputs


def test_classifier_metrics_count_agreement_and_accuracy() -> None:
    ref = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    out = np.array([[1.0, 2.0], [0.0, 3.0], [5.0, 0.0]])
    m = compare_outputs([out], [ref], np.array([1, 1, 0]))
    assert m["top1_agreement"] == pytest.approx(2 / 3) and m["accuracy"] == 1.0


def test_cosine_of_a_near_empty_map_with_itself_is_one() -> None:
    # a text detector's sigmoid map on an image without text: tiny but not zero
    tiny = np.random.default_rng(0).random((4, 1, 8, 8)) * 1e-9
    assert compare_outputs([tiny], [tiny], None)["cosine"] == pytest.approx(1.0)


def test_cosine_of_all_zero_outputs_is_one_when_both_are_zero_and_zero_otherwise() -> None:
    zero, ones = np.zeros((2, 3, 4, 4)), np.ones((2, 3, 4, 4))
    assert compare_outputs([zero], [zero], None)["cosine"] == 1.0
    assert compare_outputs([zero], [ones], None)["cosine"] == 0.0
    assert compare_outputs([-ones], [ones], None)["cosine"] == pytest.approx(-1.0)


def test_explained_variance_weighs_class_scores_like_box_coordinates() -> None:
    from onnxprune.measure.metrics import explained_variance

    rng = np.random.default_rng(0)
    ref = np.concatenate([rng.uniform(0, 640, (4, 4, 500)), rng.uniform(0, 1, (4, 80, 500))], 1)  # YOLOv8 (N, 84, A)
    out = ref.copy()
    out[:, 4:] = rng.uniform(0, 1, (4, 80, 500))  # boxes kept, class scores lost
    assert compare_outputs([out], [ref], None)["cosine"] > 0.99  # the boxes hide it from cosine
    assert explained_variance(out, ref) < 0.1
    assert explained_variance(ref, ref) == 1.0


