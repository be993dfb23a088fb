"""Each output judged for what it is, and no verdict from a reference that holds nothing."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import GraphBuilder

from onnxprune import prune
from onnxprune.graph.load import load
from onnxprune.measure.roles import find_roles, role_measure
from onnxprune.measure.tasks import TaskSettings, infer_task, measure


def _face_stage() -> GraphBuilder:
    """An O-Net-like face stage: box deltas (N, 4), landmarks (N, 10), face probability (N, 2)."""
    g = GraphBuilder(input_shape=("n", 3, 16, 16))
    features = g.node("Flatten", [g.node("GlobalAveragePool", [g.node("Relu", [g.conv("x", 3, 8)])])])
    g.outputs = [g.node("Gemm", [features, g.rand(4, 8), g.rand(4)], transB=1),
                 g.node("Gemm", [features, g.rand(10, 8), g.rand(10)], transB=1),
                 g.node("Softmax", [g.node("Gemm", [features, g.rand(2, 8), g.rand(2)], transB=1)], axis=1)]
    return g


def _roles(model) -> tuple:
    loaded = load(model, (16, 16))
    return loaded, find_roles(loaded.model, [a.rest for a in loaded.output_axes])


def test_box_deltas_and_landmarks_are_regressions_and_the_softmax_is_probabilities() -> None:
    g = _face_stage()
    loaded, roles = _roles(g.build(g.outputs))
    assert [r.role for r in roles] == ["regression", "regression", "probabilities"]
    first = loaded.output_axes[0]
    assert infer_task(loaded.model, first.rest, False, False) == "regress"  # never "top-1" of four deltas


def test_the_worst_output_decides_and_each_output_has_its_figure() -> None:
    g = _face_stage()
    _, roles = _roles(g.build(g.outputs))
    rng = np.random.default_rng(0)
    ref = [rng.standard_normal((50, 4)), rng.standard_normal((50, 10)), rng.dirichlet([1, 1], 50)]
    settings = TaskSettings(roles=roles)
    assert measure("regress", ref, ref, None, settings).figure() == pytest.approx(1.0)
    flipped = [ref[0], ref[1], ref[2].copy()]
    flipped[2][:10] = flipped[2][:10, ::-1]  # the face probability flips on 10 of 50 (unless a tie)
    m = measure("regress", flipped, ref, None, settings)
    agreement = role_measure(roles[2], flipped[2], ref[2])
    assert m.metric == "worst_output" and m.figure() == pytest.approx(agreement.value(np.arange(50)))
    assert agreement.metric == "top1_agreement" and m.figure() <= 0.81


def _centernet() -> GraphBuilder:
    """A sigmoid heatmap beside a size map whose values are hundreds of times larger."""
    g = GraphBuilder(input_shape=("n", 3, 16, 16))
    trunk = g.node("Relu", [g.conv("x", 3, 8)])
    g.outputs = [g.node("Sigmoid", [g.conv(trunk, 8, 2)]), g.conv(trunk, 8, 2)]
    return g


def test_a_heatmap_is_judged_by_its_peaks_not_drowned_by_the_size_map() -> None:
    g = _centernet()
    _, roles = _roles(g.build(g.outputs))
    assert [r.role for r in roles] == ["scores", "regression"]
    heat = np.full((20, 2, 16, 16), 0.01, np.float32)
    for i in range(20):
        heat[i, i % 2, 3 + i % 5, 4 + i % 7] = 0.9  # one object a map
    sizes = np.random.default_rng(0).standard_normal((20, 2, 16, 16)).astype(np.float32) * 300
    moved = np.roll(heat, 4, axis=3)  # every peak four cells away: nothing found where it was
    m = measure("regress", [moved, sizes], [heat, sizes], None, TaskSettings(roles=roles))
    assert m.figure() == pytest.approx(0.0)
    near = np.roll(heat, 1, axis=3)  # a cell away is the same object
    assert measure("regress", [near, sizes], [heat, sizes], None, TaskSettings(roles=roles)).figure() == 1.0


@pytest.mark.parametrize("task, empty, why", [
    ("detect", np.zeros((6, 84, 100), np.float32), "decode to no boxes"),
    ("segment", np.zeros((6, 1, 16, 16), np.float32), "masks are empty"),
    ("segment", np.stack([np.ones((6, 16, 16)), np.zeros((6, 16, 16))], 1).astype(np.float32), "masks are empty"),
    ("ctc", np.tile(np.eye(5, dtype=np.float32)[0], (6, 12, 1)), "blank"),
])
def test_a_task_measure_with_nothing_to_compare_is_undefined_not_perfect(task: str, empty: np.ndarray,
                                                                         why: str) -> None:
    noisy = empty + np.random.default_rng(0).standard_normal(empty.shape).astype(np.float32) * 0.01
    m = measure(task, [noisy], [empty], None, TaskSettings(blank=0 if task == "ctc" else None))
    assert m.reference_items == 0 and m.undefined is not None and why in m.undefined
    assert m.metric not in ("map50", "iou", "miou", "string_agreement")
    assert m.figure() < 1.0  # the outputs' own measure sees the noise


def test_a_reference_with_boxes_is_judged_by_its_task() -> None:
    ref = np.zeros((4, 6, 100), np.float32)
    ref[:, :4, 0] = [10, 10, 4, 4]
    ref[:, 4, 0] = 0.9
    m = measure("detect", [ref], [ref], None, TaskSettings())
    assert m.metric == "map50" and m.reference_items == 4 and m.undefined is None


def test_the_report_lists_each_outputs_role_and_figure() -> None:
    g = _face_stage()
    x = np.random.default_rng(0).standard_normal((40, 3, 16, 16)).astype(np.float32)
    report = prune(g.build(g.outputs), x, 0.7, input_size=(16, 16), rounds=1, round_steps=1, epochs=0, round_to=1,
                   bench=False, max_drop=100).report
    data = report.as_dict()["quality"]
    assert report.quality.task == "regress" and data["drop"]["metric"] == "worst_output"
    assert [o["role"] for o in data["outputs"]] == ["regression", "regression", "probabilities"]
    worst = min(o["after"] for o in data["outputs"])
    assert report.quality.after["worst_output"] == pytest.approx(worst)
