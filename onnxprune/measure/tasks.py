"""What a model is for, and the measure its users judge it by.

A classifier's user counts correct answers; a detector's compares boxes (mAP), a segmenter's
masks (mIoU), an OCR reader's strings (exact agreement, character error rate), an embedding's
neighbours. The task is inferred from the first output and the graph (``infer_task``) or named
(``--task``); without labels the original model's result on each image is the reference.

Every measure is a ``Measure``: its figure on any subset of the held-out items, so
``intervals.py`` can bootstrap it. Figures are in [0, 1]; ``--max-drop`` counts 100 × their fall.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from ..data.sources import UNLABELLED
from ..errors import OnnxpruneError
from .heads import HEADS, decode_head, find_head, ungrid
from .roles import REGRESSION_WIDTHS, OutputRole, neighbours, normalizes, role_measure

if TYPE_CHECKING:  # annotations only: the CLI reads this module before checking its paths, and onnx takes 0.6 s
    import onnx

__all__ = ["Task", "TASKS", "BoxLayout", "MEASURED_BY", "BOX_LAYOUTS", "TaskSettings", "Measure", "infer_task", "measure", "decode_boxes",
           "nms", "best_boxes", "greedy_ctc", "box_iou", "load_metric", "worst_output", "output_figures"]

Task = Literal["classify", "detect", "segment", "ctc", "embed", "regress"]
TASKS: tuple[Task, ...] = get_args(Task)
# cxcywh-classes: (N, 4 + C, A), YOLOv8; cxcywh-obj-classes: (N, A, 5 + C), YOLOv5 and YOLOX;
# xyxy-score-class: (N, K, 6), boxes decoded and filtered in the graph; gfl, centernet and anchors:
# heads of several outputs (heads.py)
BoxLayout = Literal["cxcywh-classes", "cxcywh-obj-classes", "xyxy-score-class", "gfl", "centernet", "anchors"]
BOX_LAYOUTS: tuple[BoxLayout, ...] = get_args(BoxLayout)
MEASURED_BY = {  # what --max-drop limits, in words
    "classify": "accuracy (labels) or top-1 agreement with the original",
    "detect": "mAP@0.5 of the pruned model's boxes against the original's",
    "segment": "mIoU (or IoU of the binarized map) against the original's masks",
    "ctc": "exact agreement of greedy-decoded strings with the original's",
    "embed": "nearest-neighbour agreement with the original's embeddings",
    "regress": "each output by its role (class agreement, heatmap peaks, explained variance of regressions, "
               "…) against the original's; the worst output decides",
}
CONFIDENCE = 0.25  # the reference's boxes: what a user of the original sees (Ultralytics' default)
SEARCH_CONFIDENCE = 0.001  # the pruned model's candidates, ranked by score, as mAP evaluation does
NMS_IOU = 0.45
MOST_BOXES = 300  # per image after NMS
MOST_CANDIDATES = 1000  # per image before NMS, by score


@dataclass(frozen=True)
class TaskSettings:
    """What the user said about the task (every field may be left to inference)."""

    task: Task | None = None  # None: inferred
    box_layout: BoxLayout | None = None  # None: from the shape
    mask_threshold: float = 0.3  # a one-channel probability map's binarization (DB-style detectors)
    blank: int | None = None  # the CTC blank class; None: the most frequent argmax
    metric: str | None = None  # "module:function" (original outputs, pruned outputs, labels) → score
    roles: tuple[OutputRole, ...] = ()  # each output's role (roles.find_roles); () → every output a regression
    input_size: tuple[int, int] | None = None  # the model's input H, W: a multi-output head's strides


@dataclass(frozen=True)
class Measure:
    """A figure of merit over held-out items, computable on any subset of them."""

    metric: str  # what --max-drop limits, e.g. "accuracy", "map50", "miou", "string_agreement"
    value: Callable[[np.ndarray], float]  # item indices (repeats allowed) → figure
    items: int
    hits: np.ndarray | None = None  # per item 1/0 where the figure is a share of items (Wilson, Newcombe)
    extras: dict[str, float] = field(default_factory=dict)  # other figures on all items
    reference_items: int | None = None  # what the reference holds to compare (boxes, masks, strings, peaks)
    undefined: str | None = None  # why the task's own measure could not judge, when this one stands in

    def figure(self) -> float:
        return self.value(np.arange(self.items))


# -- which task -------------------------------------------------------------------------------

def infer_task(model: onnx.ModelProto, sample_shape: tuple[int, ...], sequence_first: bool,
               labels: bool, head: str | None = None) -> Task:
    """The task of a model from its first output's per-sample shape and the graph: a CTC reader
    when its per-step scores come out sequence-first or after a recurrent layer, a detector
    when a rank-2 per-sample output holds thousands of candidates, a segmenter when it is a map,
    an embedding when the graph ends by normalizing its vector, a classifier for scores; a detector
    when the outputs together form a known ``head`` (heads.find_head)."""
    if head is not None and not labels:
        return "detect"
    ops = {n.op_type for n in model.graph.node}
    last = _producer(model, model.graph.output[0].name)
    if len(sample_shape) == 1:
        if labels or sample_shape[0] < 2:
            return "classify" if labels else "regress"
        if normalizes(model, model.graph.output[0].name):
            return "embed"
        linear = last is None or last.op_type not in ("Softmax", "LogSoftmax", "Sigmoid")
        if linear and sample_shape[0] in REGRESSION_WIDTHS and (len(model.graph.output) > 1 or sample_shape[0] == 4):
            return "regress"  # box deltas or landmarks, judged beside the other outputs by their roles
        return "classify"
    if len(sample_shape) == 2:
        steps, width = sample_shape
        if (sequence_first or ops & {"LSTM", "GRU", "RNN"}) and width >= 3:
            return "ctc"
        if last is not None and last.op_type in ("Softmax", "LogSoftmax") and width >= 3 and \
                _axis(last) in (-1, 2):  # a class distribution per step: an attention reader's
            return "ctc"
        if max(steps, width) >= 100 and min(steps, width) >= 5:
            return "detect"
        if width == 6 and steps <= 1000:
            return "detect"
        return "regress"
    if len(sample_shape) == 3 and len(model.graph.output) == 1 and min(sample_shape[1:]) >= 4:
        return "segment"
    return "regress"


def _axis(node: onnx.NodeProto) -> int:
    """A Softmax's ``axis`` (ONNX's default before opset 13 is 1, from 13 on −1; exporters write it)."""
    return next((a.i for a in node.attribute if a.name == "axis"), -1)


def _producer(model: onnx.ModelProto, name: str) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if name in n.output), None)


# -- measures ---------------------------------------------------------------------------------

def measure(task: Task, outputs: list[np.ndarray], reference: list[np.ndarray], labels: np.ndarray | None,
            settings: TaskSettings, full: bool = True, clusters: np.ndarray | None = None) -> Measure:
    """``outputs`` judged by the task's measure against ``labels`` (classifiers) or the
    original's ``reference`` outputs; both batch-first. Without ``full`` only the measure
    --max-drop limits is computed (a detector's mAP@0.5 without its mAP@0.5:0.95): every round's."""
    if settings.metric:
        return _user_metric(settings.metric, outputs, reference, labels)
    measured, why = _task_measure(task, outputs, reference, labels, settings, full, clusters)
    if measured.reference_items == 0:  # nothing to compare is no verdict: the outputs' own measures judge
        fallback = worst_output(outputs, reference, settings.roles, clusters)
        return replace(fallback, extras=measured.extras | fallback.extras, reference_items=0,
                       undefined=f"{measured.metric} is undefined: {why}")
    return measured


def _task_measure(task: Task, outputs: list[np.ndarray], reference: list[np.ndarray], labels: np.ndarray | None,
                  settings: TaskSettings, full: bool, clusters: np.ndarray | None) -> tuple[Measure, str]:
    """The task's measure, and what an empty reference means for it (said when it is empty)."""
    out, ref = outputs[0], reference[0]
    if task == "classify":
        return _classify(out, ref, labels), ""
    if task == "detect":
        return _detect(outputs, reference, settings, full), "the original's outputs decode to no boxes"
    if task == "segment":
        return _segment(out, ref, settings.mask_threshold), "the original's masks are empty"
    if task == "ctc":
        return _ctc(out, ref, settings.blank), "every string the original reads is blank"
    if task == "embed":
        return _embed(out, ref, clusters), ""
    return worst_output(outputs, reference, settings.roles, clusters), ""


def output_roles(outputs: list[np.ndarray], roles: tuple[OutputRole, ...]) -> tuple[OutputRole, ...]:
    """``roles`` where they were found from the graph, else every output a regression."""
    if len(roles) == len(outputs):
        return roles
    return tuple(OutputRole(f"output {k}", "regression", "no graph to tell") for k in range(len(outputs)))


def output_figures(outputs: list[np.ndarray], reference: list[np.ndarray], roles: tuple[OutputRole, ...],
                   clusters: np.ndarray | None = None) -> list[dict[str, object]]:
    """Each output's role, measure and figure on all items (for the report)."""
    rows = []
    for role, out, ref in zip(output_roles(outputs, roles), outputs, reference):
        figure = role_measure(role, out, ref, clusters)
        rows.append({"name": role.name, "role": role.role, "why": role.why, "metric": figure.metric,
                     "figure": figure.value(np.arange(len(out))),  # type: ignore[operator]
                     "reference_items": figure.reference_items})
    return rows


def worst_output(outputs: list[np.ndarray], reference: list[np.ndarray], roles: tuple[OutputRole, ...],
                 clusters: np.ndarray | None = None) -> Measure:
    """Each output judged by its role's measure; the worst of them is the figure (each is 1.0 for
    the original against itself, so the lowest is the largest loss). One output keeps its own name."""
    figures = [role_measure(role, out, ref, clusters)
               for role, out, ref in zip(output_roles(outputs, roles), outputs, reference)]
    items = len(outputs[0])
    if len(figures) == 1:
        only = figures[0]
        return Measure(only.metric, only.value, items, only.hits, reference_items=None)  # type: ignore[arg-type]

    def value(idx: np.ndarray) -> float:
        return min(f.value(idx) for f in figures)  # type: ignore[operator]

    return Measure("worst_output", value, items)


def _share(hits: np.ndarray, metric: str, extras: dict[str, float] | None = None) -> Measure:
    hits = hits.astype(np.float64)
    return Measure(metric, lambda idx: float(hits[idx].mean()) if len(idx) else 1.0, len(hits), hits,
                   extras or {})


def _classify(out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> Measure:
    """Accuracy where every held-out image is labelled. Where only some are, top-1 agreement over
    all of them is the measure (more images, a tighter interval) and accuracy on the labelled
    ones an extra."""
    agreement = out.argmax(1) == ref.argmax(1)
    if labels is None:
        return _share(agreement, "top1_agreement")
    known = labels != UNLABELLED
    if known.all():
        return _share(out.argmax(1) == labels, "accuracy")
    extras = {"labelled": float(known.sum())}
    if known.any():
        extras["accuracy"] = float((out.argmax(1) == labels)[known].mean())
    return _share(agreement, "top1_agreement", extras)


def _user_metric(spec: str, outputs: list[np.ndarray], reference: list[np.ndarray],
                 labels: np.ndarray | None) -> Measure:
    function = load_metric(spec)

    def value(idx: np.ndarray) -> float:
        return float(function([r[idx] for r in reference], [o[idx] for o in outputs],
                              None if labels is None else labels[idx]))

    return Measure(spec.split(":")[-1], value, len(outputs[0]))


def load_metric(spec: str) -> Callable:
    """``module:function`` imported (the working folder first on the path, as a user expects of a
    module beside their data), or one line saying why not."""
    module_name, _, name = spec.partition(":")
    if not module_name or not name:
        raise OnnxpruneError(f"--metric {spec!r}: give it as module:function (a module on the Python path)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        function = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as err:
        raise OnnxpruneError(f"--metric {spec!r}: cannot import it ({err})") from err
    if not callable(function):
        raise OnnxpruneError(f"--metric {spec!r} is not a function")
    return function


# segmentation: per image and class, intersections and unions; mIoU over the classes present

PROBABILITY_SLACK = 1e-4  # how far outside [0, 1] float32 rounding takes a probability map

def _segment(out: np.ndarray, ref: np.ndarray, threshold: float) -> Measure:
    if out.shape[1] == 1:
        # a probability map, give or take float32 rounding: onnxruntime's fused sigmoid gives 1.0000001,
        # which read as logits made every pixel text and the measure perfect (PP-OCRv4's DB detector)
        probabilities = -PROBABILITY_SLACK <= ref.min() and ref.max() <= 1 + PROBABILITY_SLACK
        cut = threshold if probabilities else float(np.log(threshold / (1 - threshold)))
        a, b = out[:, 0] > cut, ref[:, 0] > cut  # a probability map, or logits: the same threshold
        inter = (a & b).reshape(len(a), -1).sum(1)[:, None]
        union = (a | b).reshape(len(a), -1).sum(1)[:, None]
        metric = "iou"
        masks = int(b.reshape(len(b), -1).any(1).sum())  # images whose reference mask is not empty
    else:
        a, b = out.argmax(1), ref.argmax(1)
        classes = out.shape[1]
        inter = np.stack([((a == c) & (b == c)).reshape(len(a), -1).sum(1) for c in range(classes)], 1)
        union = np.stack([((a == c) | (b == c)).reshape(len(a), -1).sum(1) for c in range(classes)], 1)
        metric = "miou"
        common = int(np.bincount(b.reshape(-1), minlength=classes).argmax())  # the background, usually
        masks = int((b != common).reshape(len(b), -1).any(1).sum())  # images with anything but it

    def value(idx: np.ndarray) -> float:
        i, u = inter[idx].sum(0), union[idx].sum(0)
        present = u > 0
        return float((i[present] / u[present]).mean()) if present.any() else 1.0

    return Measure(metric, value, len(out), extras={"pixel_agreement": float(np.mean(a == b))},
                   reference_items=masks)


# CTC: greedy decoding, exact strings and character error rate

def greedy_ctc(scores: np.ndarray, blank: int) -> list[tuple[int, ...]]:
    """Per item (T, C) scores → the label sequence: best class per step, repeats merged, blanks out."""
    best = scores.argmax(-1)
    decoded = []
    for row in best:
        keep = np.r_[True, row[1:] != row[:-1]] & (row != blank)
        decoded.append(tuple(int(c) for c in row[keep]))
    return decoded


def _edit_distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def _ctc(out: np.ndarray, ref: np.ndarray, blank: int | None) -> Measure:
    if blank is None:  # the blank fills most steps of a CTC output
        blank = int(np.bincount(ref.argmax(-1).reshape(-1), minlength=ref.shape[-1]).argmax())
    ours, theirs = greedy_ctc(out, blank), greedy_ctc(ref, blank)
    same = np.array([a == b for a, b in zip(ours, theirs)])
    errors = np.array([_edit_distance(a, b) for a, b in zip(ours, theirs)], dtype=np.float64)
    lengths = np.array([max(len(b), 1) for b in theirs], dtype=np.float64)
    cer = float(errors.sum() / lengths.sum())
    measured = _share(same, "string_agreement", {"character_error_rate": cer, "blank": float(blank)})
    return replace(measured, reference_items=sum(1 for b in theirs if b))


# embeddings: cosine to the original's vector, and a nearest neighbour the original also puts near

def _embed(out: np.ndarray, ref: np.ndarray, clusters: np.ndarray | None) -> Measure:
    found = neighbours(out, ref, clusters)
    a, b = (x.reshape(len(x), -1).astype(np.float64) for x in (out, ref))
    cosine = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    assert found.hits is not None
    return _share(found.hits, found.metric, {"cosine": float(cosine.mean())})


# detection: decode, NMS, and AP of the pruned model's boxes against the original's

def _layout(shape: tuple[int, ...], given: str | None) -> str:
    if given:
        return given
    rows, cols = shape[1], shape[2]
    if cols == 6 and rows <= 1000:
        return "xyxy-score-class"
    return "cxcywh-classes" if rows < cols else "cxcywh-obj-classes"


def decode_boxes(output: np.ndarray, layout: str | None = None, confidence: float = CONFIDENCE
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per image: (boxes x1 y1 x2 y2, scores, classes) above ``confidence``, after per-class NMS."""
    layout = _layout(output.shape, layout)
    images = []
    for item in output.astype(np.float32):
        if layout == "xyxy-score-class":
            boxes, scores, classes = item[:, :4], item[:, 4], item[:, 5].astype(np.int64)
        else:
            rows = item if layout == "cxcywh-classes" else item.T  # features × candidates
            centre, size = rows[:2].T, rows[2:4].T
            if layout == "cxcywh-classes":
                class_scores = rows[4:]
            else:
                class_scores = rows[5:] * rows[4:5] if len(rows) > 5 else rows[4:5]
            classes = class_scores.argmax(0)
            scores = class_scores[classes, np.arange(class_scores.shape[1])]
            boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
        images.append(best_boxes(boxes, scores, classes, confidence))
    return images


def best_boxes(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, confidence: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's candidates above ``confidence``, the best ``MOST_CANDIDATES`` by score, after
    per-class NMS (at most ``MOST_BOXES``): what every layout and head decodes to."""
    keep = scores >= confidence
    boxes, scores, classes = boxes[keep], scores[keep], classes[keep]
    order = np.argsort(-scores, kind="stable")[:MOST_CANDIDATES]
    boxes, scores, classes = boxes[order], scores[order], classes[order]
    kept = nms(boxes, scores, classes)[:MOST_BOXES]
    return boxes[kept], scores[kept], classes[kept]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` with every box in ``b`` (x1 y1 x2 y2), in float32."""
    a, b = a.astype(np.float32, copy=False), b.astype(np.float32, copy=False)
    width = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    height = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(width, 0, None) * np.clip(height, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float = NMS_IOU) -> np.ndarray:
    """Indices kept by greedy per-class non-maximum suppression, best score first (the IoU of
    every pair computed once: candidates are capped at ``MOST_CANDIDATES``)."""
    order = np.argsort(-scores, kind="stable")[:MOST_CANDIDATES]
    # boxes of different classes never overlap: shift each class far away (the usual trick)
    shifted = boxes[order] + classes[order, None].astype(np.float32) * (float(np.abs(boxes).max(initial=1.0)) * 4 + 1)
    overlaps = box_iou(shifted, shifted) > iou
    suppressed = np.zeros(len(order), bool)
    kept = []
    for i in range(len(order)):
        if not suppressed[i]:
            kept.append(order[i])
            suppressed |= overlaps[i]
    return np.asarray(kept, dtype=np.int64)


def _matches(pred, truth, thresholds) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """One image, per IoU threshold: (classes, scores, true positive) of its predictions, each
    matched greedily by score to an unmatched reference box of its class at that IoU or more."""
    boxes, scores, classes = pred
    t_boxes, _, t_classes = truth
    ious = None
    if len(boxes) and len(t_boxes):
        ious = box_iou(boxes, t_boxes)
        ious[classes[:, None] != t_classes[None, :]] = 0
    by_score = np.argsort(-scores, kind="stable")
    rows = []
    for threshold in thresholds:
        hit = np.zeros(len(boxes), bool)
        if ious is not None:
            taken = np.zeros(len(t_boxes), bool)
            for i in by_score:
                candidates = np.where(~taken & (ious[i] >= threshold))[0]
                if len(candidates):
                    j = candidates[ious[i, candidates].argmax()]
                    taken[j] = hit[i] = True
        rows.append((classes, scores, hit))
    return rows


def _average_precision(classes, scores, hits, truth_counts: dict[int, int]) -> float:
    """Mean over the reference's classes of the area under the all-points interpolated
    precision-recall curve (VOC 2010+ / COCO style without the 101-point sampling)."""
    aps = []
    for c, total in truth_counts.items():
        if total == 0:
            continue
        mine = classes == c
        order = np.argsort(-scores[mine], kind="stable")
        tp = hits[mine][order].astype(np.float64)
        if not len(tp):
            aps.append(0.0)
            continue
        cum_tp, cum_fp = np.cumsum(tp), np.cumsum(1 - tp)
        recall = cum_tp / total
        precision = cum_tp / (cum_tp + cum_fp)
        envelope = np.maximum.accumulate(np.r_[precision, 0.0][::-1])[::-1]
        steps = np.diff(np.r_[0.0, recall])
        aps.append(float((steps * envelope[:-1]).sum()))
    return float(np.mean(aps)) if aps else 1.0


def _decode(outputs: list[np.ndarray], settings: TaskSettings, confidence: float
            ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Boxes per image from the layout named, or the head the outputs form, or the first output's shape."""
    layout = settings.box_layout
    if layout is None and len(settings.roles) == len(outputs) > 1:
        layout = find_head(settings.roles, [o.shape[1:] for o in outputs])
    if layout in HEADS:
        if settings.input_size is None or len(settings.roles) != len(outputs):
            raise OnnxpruneError(f"--box-layout {layout} needs the model's outputs and input size")
        return decode_head(layout, outputs, settings.roles, settings.input_size, confidence, best_boxes)
    if outputs[0].ndim != 3:
        raise OnnxpruneError(f"--task detect needs an output of (N, rows, columns) boxes, not {outputs[0].shape}")
    output = outputs[0]
    if settings.input_size is not None and _layout(output.shape, layout) == "cxcywh-obj-classes":
        output = ungrid(output, settings.input_size)  # YOLOX exported without its decode
    return decode_boxes(output, layout, confidence)


def _detect(outputs: list[np.ndarray], reference: list[np.ndarray], settings: TaskSettings,
            full: bool = True) -> Measure:
    out = outputs[0]
    truth = _decode(reference, settings, CONFIDENCE)
    predictions = _decode(outputs, settings, SEARCH_CONFIDENCE)
    thresholds = [float(t) for t in np.round(np.arange(0.5, 0.96, 0.05), 2)] if full else [0.5]
    per_image = [_matches(p, t, thresholds) for p, t in zip(predictions, truth)]
    per_threshold = {t: [rows[k] for rows in per_image] for k, t in enumerate(thresholds)}
    truth_classes = [t[2] for t in truth]

    def value_at(threshold: float, idx: np.ndarray) -> float:
        rows = [per_threshold[threshold][i] for i in idx]
        if not rows:
            return 1.0
        classes = np.concatenate([r[0] for r in rows])
        scores = np.concatenate([r[1] for r in rows])
        hits = np.concatenate([r[2] for r in rows])
        counts: dict[int, int] = {}
        for i in idx:
            for c in truth_classes[i]:
                counts[int(c)] = counts.get(int(c), 0) + 1
        return _average_precision(classes, scores, hits, counts)

    everything = np.arange(len(out))
    boxes = sum(len(t) for t in truth_classes)
    extras = {"reference_boxes": float(boxes)}
    if full and boxes:
        extras["map50_95"] = float(np.mean([value_at(t, everything) for t in per_threshold]))
    return Measure("map50", lambda idx: value_at(0.5, idx), len(out), extras=extras, reference_items=boxes)
