"""Each kind of model is judged by its users' measure, found from its outputs and graph."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import SAMPLES
from graphs import GraphBuilder

from onnxprune import prune
from onnxprune.graph.load import load
from onnxprune.measure.intervals import drop_interval, items_to_resolve, wilson
from onnxprune.measure.tasks import TaskSettings, decode_boxes, greedy_ctc, infer_task, measure


def _task_of(model: onnx.ModelProto, labels: bool = False) -> str:
    loaded = load(model, (16, 16))
    first = loaded.output_axes[0]
    return infer_task(loaded.model, first.rest, first.axis != 0 and first.fold == 1, labels)


def _backbone(g: GraphBuilder) -> str:
    return g.node("Relu", [g.conv("x", 3, 8)])


def test_a_one_channel_probability_map_is_a_segmentation_judged_by_iou() -> None:
    g = GraphBuilder(input_shape=(1, 3, 16, 16))
    text = g.node("Sigmoid", [g.conv(_backbone(g), 8, 1)])
    assert _task_of(g.build([text])) == "segment"
    ref = np.random.default_rng(0).random((6, 1, 16, 16)).astype(np.float32)
    same = measure("segment", [ref], [ref], None, TaskSettings())
    assert same.metric == "iou" and same.figure() == 1.0
    shifted = measure("segment", [np.roll(ref, 3, axis=3)], [ref], None, TaskSettings())
    assert 0.2 < shifted.figure() < 0.9
    # a probability a float32 rounding above 1 (onnxruntime's fused sigmoid) is still a probability:
    # read as logits, every pixel was text and a pruned DB detector's map was judged perfect
    rounded = ref.copy()
    rounded[0, 0, 0, 0] = np.float32(1.0000001)
    assert measure("segment", [np.roll(rounded, 3, axis=3)], [rounded], None, TaskSettings()).figure() < 0.9


def test_a_class_map_is_judged_by_miou() -> None:
    g = GraphBuilder(input_shape=(1, 3, 16, 16))
    assert _task_of(g.build([g.conv(_backbone(g), 8, 5)])) == "segment"
    ref = np.random.default_rng(1).standard_normal((4, 5, 16, 16)).astype(np.float32)
    assert measure("segment", [ref], [ref], None, TaskSettings()).metric == "miou"


def test_an_embedding_ends_by_normalizing_and_is_judged_by_its_neighbours() -> None:
    g = GraphBuilder(input_shape=(1, 3, 16, 16))
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [_backbone(g)])])
    vector = g.node("Gemm", [pooled, g.rand(32, 8), g.rand(32)], transB=1)
    assert _task_of(g.build([g.node("LpNormalization", [vector], axis=1, p=2)])) == "embed"
    ref = np.random.default_rng(2).standard_normal((20, 32)).astype(np.float32)
    noisy = ref + 0.001 * np.random.default_rng(3).standard_normal(ref.shape).astype(np.float32)
    m = measure("embed", [noisy], [ref], None, TaskSettings())
    assert m.metric == "neighbour_agreement" and m.figure() == 1.0 and m.extras["cosine"] > 0.99
    assert measure("embed", [ref[::-1].copy()], [ref], None, TaskSettings()).figure() < 0.5


def _nearest(x: np.ndarray) -> np.ndarray:
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    s = u @ u.T
    np.fill_diagonal(s, -np.inf)
    return s.argmax(1)


def test_an_embedding_neighbour_agrees_within_the_originals_nearest_not_only_its_exact_nearest() -> None:
    """Near-duplicates (five renders of each of 20 letters) swap exact neighbours under a change no
    user would see; the measure counts a neighbour the original puts among its 5 nearest."""
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((20, 32))
    ref = np.repeat(centres, 5, axis=0) + 0.05 * rng.standard_normal((100, 32))
    jitter = ref + 0.05 * rng.standard_normal(ref.shape)  # swaps near-duplicates, keeps letters apart
    assert np.mean(_nearest(jitter) == _nearest(ref)) < 0.8  # the exact neighbour flips
    assert measure("embed", [jitter], [ref], None, TaskSettings()).figure() > 0.95
    scrambled = rng.standard_normal(ref.shape)
    assert measure("embed", [scrambled], [ref], None, TaskSettings()).figure() < 0.3


def test_views_of_one_image_are_not_each_others_neighbours() -> None:
    """Twelve shifted views of each of 30 images: a view's neighbours are the other images."""
    rng = np.random.default_rng(5)
    images = rng.standard_normal((30, 16))
    clusters = np.repeat(np.arange(30), 12)
    ref = images[clusters] + 0.01 * rng.standard_normal((360, 16))
    nudged = ref + 1e-4 * rng.standard_normal(ref.shape)
    same = measure("embed", [nudged], [ref], None, TaskSettings(), clusters=clusters)
    assert same.figure() == 1.0
    # a model that maps every image onto another keeps each image's views together and is still wrong
    other = measure("embed", [images[(clusters + 7) % 30] ** 3], [ref], None, TaskSettings(), clusters=clusters)
    assert other.figure() < 0.5


def test_a_classifier_stays_a_classifier_and_labels_make_it_accuracy() -> None:
    g = GraphBuilder(input_shape=(1, 3, 16, 16))
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [_backbone(g)])])
    logits = g.node("Gemm", [pooled, g.rand(10, 8), g.rand(10)], transB=1)
    assert _task_of(g.build([logits])) == "classify"
    ref = np.eye(10, dtype=np.float32)[[1, 2, 3, 4]]
    assert measure("classify", [ref], [ref], np.array([1, 2, 3, 0]), TaskSettings()).figure() == 0.75


def test_a_crnn_is_a_ctc_reader_decoded_greedily(tmp_path) -> None:
    from crnn import export_crnn

    loaded = load(export_crnn(tmp_path / "crnn.onnx"))
    first = loaded.output_axes[0]
    assert infer_task(loaded.model, first.rest, first.axis != 0, False) == "ctc"
    steps = np.full((1, 8, 4), -5.0, np.float32)  # blank = 0
    for t, c in enumerate([0, 2, 2, 0, 2, 3, 3, 0]):
        steps[0, t, c] = 0.0
    assert greedy_ctc(steps[0:1], 0) == [(2, 2, 3)]
    other = steps.copy()
    other[0, 4] = -5.0
    other[0, 4, 0] = 0.0  # the second 2 dropped: "2 3"
    m = measure("ctc", [np.concatenate([other, steps])], [np.concatenate([steps, steps])], None, TaskSettings())
    assert m.metric == "string_agreement" and m.figure() == 0.5
    assert m.extras["character_error_rate"] == pytest.approx(1 / 6)


def _yolov8_rows(boxes: np.ndarray, classes: np.ndarray, n_classes: int = 3, anchors: int = 200) -> np.ndarray:
    """One image as YOLOv8 writes it: (4 + C, A) of cx, cy, w, h and class scores."""
    out = np.zeros((4 + n_classes, anchors), np.float32)
    out[:4] = np.array([[50, 50, 10, 10]], np.float32).T  # background anchors with low scores
    out[4:] = 0.01
    for i, (box, c) in enumerate(zip(boxes, classes)):
        out[:4, i] = [(box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]]
        out[4 + c, i] = 0.9
    return out


def test_a_detector_is_judged_by_map_of_its_boxes_decoded_either_way() -> None:
    boxes = np.array([[10, 10, 30, 40], [50, 60, 90, 100], [12, 10, 31, 41]], np.float32)
    classes = np.array([0, 1, 2])
    v8 = _yolov8_rows(boxes, classes)[None]
    # the same boxes the YOLOv5 / YOLOX way: (A, 5 + C) with objectness
    v5 = np.concatenate([v8[0, :4], np.ones((1, 200), np.float32), v8[0, 4:]]).T[None]
    for out, layout in ((v8, "cxcywh-classes"), (v5, "cxcywh-obj-classes")):
        ((found, scores, found_classes),) = decode_boxes(out)
        order = np.argsort(found_classes)
        np.testing.assert_allclose(found[order], boxes, atol=1e-4)
        assert list(found_classes[order]) == [0, 1, 2], layout
        assert measure("detect", [out], [out], None, TaskSettings()).figure() == pytest.approx(1.0)
    moved = _yolov8_rows(boxes + [[0, 0, 0, 0], [20, 20, 20, 20], [2, 0, 2, 0]], classes)[None]
    m = measure("detect", [moved], [v8], None, TaskSettings())
    assert m.metric == "map50" and m.figure() == pytest.approx(2 / 3) and m.extras["map50_95"] < 2 / 3


def test_a_yolo_style_export_is_found_to_be_a_detector(tmp_path) -> None:
    from detectors import build_detector, export_detector

    path = export_detector(build_detector("yolox_style"), tmp_path / "yolox.onnx", size=128)
    loaded = load(path)
    assert infer_task(loaded.model, loaded.output_axes[0].rest, False, False) == "detect"


def test_intervals_are_wilsons_for_shares_and_a_paired_bootstrap_for_drops() -> None:
    low, high = wilson(0.9, 36)
    assert low == pytest.approx(0.7606, abs=1e-3) and high == pytest.approx(0.9623, abs=1e-3)
    rng = np.random.default_rng(0)
    ref = np.eye(5, dtype=np.float32)[rng.integers(0, 5, 40)]
    worse = ref.copy()
    worse[:4] = np.roll(worse[:4], 1, axis=1)  # 4 of 40 changed: 10 points
    before = measure("classify", [ref], [ref], None, TaskSettings())
    after = measure("classify", [worse], [ref], None, TaskSettings())
    low, high = drop_interval(before, after)
    assert low <= 10 <= high and high - low > 3
    assert items_to_resolve(high - low, 40, 3.0) > 40


def test_a_held_out_share_that_cannot_resolve_the_budget_says_so(tmp_path) -> None:
    result = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.5, labels="imagefolder", rounds=1,
                   round_steps=1, epochs=0.1, calibration_images=32, round_to=1, bench=False, max_drop=50,
                   val_images=12)
    drop = result.report.quality.drop
    assert drop.items == 12 and drop.low is not None and drop.high is not None
    data = result.report.written_to("out.onnx", "out.report").as_dict()
    assert data["quality"]["intervals"]["after"][0] <= result.report.quality.after["accuracy"]
    if drop.high - drop.low > 50:
        assert data["quality"]["drop"]["resolved"] is False and drop.items_to_resolve() > 12
    tight = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.5, labels="imagefolder", rounds=1,
                  round_steps=1, epochs=0.1, calibration_images=32, round_to=1, bench=False, max_drop=1,
                  val_images=12)
    assert tight.report.quality.drop.resolved is False
    from onnxprune.render import render_summary

    assert "the interval is wider than --max-drop 1: 12 held-out images cannot resolve it" in render_summary(
        tight.report.written_to("out.onnx", "out.report").as_dict())


def test_two_models_right_on_every_one_of_a_few_items_still_get_an_honest_interval() -> None:
    from onnxprune.measure.intervals import paired_share_interval

    low, high = paired_share_interval(np.ones(12), np.ones(12))
    assert low == pytest.approx(-0.2425, abs=1e-3) and high == pytest.approx(0.2425, abs=1e-3)
    low, high = paired_share_interval(np.ones(1000), np.r_[np.ones(990), np.zeros(10)])
    assert low < 0.01 < high and high - low < 0.02


def test_a_users_own_metric_judges_the_run(tmp_path, monkeypatch) -> None:
    (tmp_path / "my_measures.py").write_text(
        "import numpy as np\n"
        "def same_answer(original, pruned, labels):\n"
        "    return float((original[0].argmax(1) == pruned[0].argmax(1)).mean())\n")
    monkeypatch.chdir(tmp_path)
    result = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.5, rounds=1, round_steps=1, epochs=0.1,
                   calibration_images=32, round_to=1, bench=False, max_drop=100, metric="my_measures:same_answer")
    quality = result.report.quality
    assert quality.drop.metric == "same_answer"
    assert quality.after["same_answer"] == pytest.approx(quality.after["top1_agreement"])
    from onnxprune.errors import OnnxpruneError

    with pytest.raises(OnnxpruneError, match="--metric 'nowhere:f': cannot import it"):
        prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.5, metric="nowhere:f", bench=False)


def test_a_few_alike_items_do_not_make_a_bootstrap_interval_collapse() -> None:
    from onnxprune.measure.intervals import agreement_floor

    ref = np.random.default_rng(0).random((6, 1, 16, 16)).astype(np.float32)
    same = measure("segment", [ref], [ref], None, TaskSettings())
    low, high = drop_interval(same, same)  # all six images alike: the bootstrap alone says [0, 0]
    assert low == pytest.approx(-agreement_floor(6)) and high == pytest.approx(agreement_floor(6)) and high > 30
    assert agreement_floor(500) < 1


def test_the_report_page_shows_the_tasks_measure_with_its_interval(tmp_path) -> None:
    from onnxprune.render import render_markdown

    g = GraphBuilder(input_shape=("n", 3, 16, 16))
    text = g.node("Sigmoid", [g.conv(_backbone(g), 8, 1)])
    x = np.random.default_rng(0).standard_normal((30, 3, 16, 16)).astype(np.float32)
    report = prune(g.build([text]), x, 0.7, input_size=(16, 16), rounds=1, round_steps=1, epochs=0, round_to=1,
                   bench=False, max_drop=100).report
    assert report.quality.task == "segment" and report.quality.drop.metric == "iou"
    page = render_markdown(report.as_dict())
    assert "| iou (segment, " in page and "95 % interval" in page
