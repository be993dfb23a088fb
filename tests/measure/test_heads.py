"""The detector heads that ship with several outputs are found from their outputs and decoded."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import GraphBuilder

from onnxprune import prune
from onnxprune.graph.load import load
from onnxprune.graph.runtime import run_model
from onnxprune.measure.heads import find_head
from onnxprune.measure.roles import find_roles
from onnxprune.measure.tasks import TaskSettings, infer_task, measure

SIZE = 64


def _rows(g: GraphBuilder, x: str, width: int) -> str:
    """(N, width, h, w) → (N, h·w, width), as heads lay out one row per anchor."""
    flat = g.node("Reshape", [x, g.init(np.array([0, width, -1], np.int64))])
    return g.node("Transpose", [flat], perm=[0, 2, 1])


def _levels(g: GraphBuilder) -> list[str]:
    """Feature maps at strides 8, 16 and 32 of a 64×64 input."""
    s8 = g.node("Relu", [g.conv("x", 3, 8, stride=8)])
    s16 = g.node("Relu", [g.conv(s8, 8, 8, stride=2)])
    s32 = g.node("Relu", [g.conv(s16, 8, 8, stride=2)])
    return [s8, s16, s32]


def gfl_head(classes: int = 3, bins: int = 8, concatenated: bool = False):
    """PicoDet-like: per stride, sigmoid class scores (A, C) and distance bins (A, 4·bins)."""
    g = GraphBuilder(input_shape=("n", 3, SIZE, SIZE))
    scores, dists = [], []
    for level in _levels(g):
        scores.append(g.node("Sigmoid", [_rows(g, g.conv(level, 8, classes, k=1), classes)]))
        dists.append(_rows(g, g.conv(level, 8, 4 * bins, k=1), 4 * bins))
    if concatenated:
        return g.build([g.node("Concat", scores, axis=1), g.node("Concat", dists, axis=1)])
    return g.build([o for pair in zip(scores, dists) for o in pair])


def centernet_head(classes: int = 2):
    g = GraphBuilder(input_shape=("n", 3, SIZE, SIZE))
    trunk = g.node("Relu", [g.conv("x", 3, 8, stride=4)])
    heat = g.node("Sigmoid", [g.conv(trunk, 8, classes)])
    size = g.node("Relu", [g.conv(trunk, 8, 2)])
    offset = g.node("Sigmoid", [g.conv(trunk, 8, 2)])
    return g.build([heat, size, offset])


def anchor_head(anchors: int = 2):
    """RetinaFace-like: per prior, box deltas, a face softmax (background first) and landmarks."""
    g = GraphBuilder(input_shape=("n", 3, SIZE, SIZE))
    loc, conf, landmarks = [], [], []
    for level in _levels(g):
        loc.append(g.node("Reshape", [g.conv(level, 8, 4 * anchors, k=1), g.init(np.array([0, -1, 4], np.int64))]))
        conf.append(g.node("Reshape", [g.conv(level, 8, 2 * anchors, k=1), g.init(np.array([0, -1, 2], np.int64))]))
        landmarks.append(g.node("Reshape", [g.conv(level, 8, 10 * anchors, k=1),
                                            g.init(np.array([0, -1, 10], np.int64))]))
    return g.build([g.node("Concat", loc, axis=1), g.node("Softmax", [g.node("Concat", conf, axis=1)], axis=2),
                    g.node("Concat", landmarks, axis=1)])


def _found(model) -> tuple[str | None, str, TaskSettings, list[np.ndarray]]:
    loaded = load(model)
    samples = [a.rest for a in loaded.output_axes]
    roles = find_roles(loaded.model, samples)
    head = find_head(roles, samples)
    first = loaded.output_axes[0]
    task = infer_task(loaded.model, first.rest, False, False, head)
    x = np.random.default_rng(0).standard_normal((8, 3, SIZE, SIZE)).astype(np.float32)
    outputs = run_model(loaded.model, {loaded.image.name: x})
    return head, task, TaskSettings(box_layout=head, roles=roles, input_size=(SIZE, SIZE)), outputs  # type: ignore[arg-type]


@pytest.mark.parametrize("build, kind", [
    (gfl_head, "gfl"), (lambda: gfl_head(concatenated=True), "gfl"), (centernet_head, "centernet"),
    (anchor_head, "anchors"),
])
def test_each_head_is_found_and_its_boxes_decoded(build, kind: str) -> None:
    head, task, settings, outputs = _found(build())
    assert head == kind and task == "detect"
    same = measure("detect", outputs, outputs, None, settings)
    assert same.metric == "map50" and same.reference_items and same.reference_items > 0
    assert same.figure() == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    noisy = [o + rng.standard_normal(o.shape).astype(np.float32) * float(o.std()) for o in outputs]
    assert measure("detect", noisy, outputs, None, settings).figure() < 0.9


def test_a_gfl_detector_prunes_and_is_judged_by_map_of_its_decoded_boxes() -> None:
    x = np.random.default_rng(0).standard_normal((40, 3, SIZE, SIZE)).astype(np.float32)
    report = prune(gfl_head(), x, 0.6, rounds=1, round_steps=1, epochs=0, round_to=1, bench=False,
                   max_drop=100).report
    drop = report.as_dict()["quality"]["drop"]
    assert report.quality.task == "detect" and drop["metric"] == "map50" and drop["reference_items"] > 0
    assert "undefined" not in drop


def test_a_yolox_head_exported_without_its_decode_is_decoded_on_its_grid() -> None:
    from onnxprune.measure.heads import ungrid

    rng = np.random.default_rng(0)
    raw = np.zeros((2, 52 * 52 + 26 * 26 + 13 * 13, 6), np.float32)  # strides 8, 16, 32 of 416×416
    raw[..., :2] = rng.uniform(0, 1, raw[..., :2].shape)
    raw[..., 2:4] = rng.uniform(0, 2, raw[..., 2:4].shape)
    decoded = ungrid(raw, (416, 416))
    last = len(raw[0]) - 1  # cell (12, 12) of stride 32
    assert decoded[0, 0, :2] == pytest.approx(raw[0, 0, :2] * 8)
    assert decoded[0, last, :2] == pytest.approx((raw[0, last, :2] + 12) * 32)
    assert decoded[0, last, 2:4] == pytest.approx(np.exp(raw[0, last, 2:4]) * 32)
    in_pixels = raw.copy()
    in_pixels[..., :2] *= 400  # already decoded in the graph: left alone
    assert np.array_equal(ungrid(in_pixels, (416, 416)), in_pixels)
