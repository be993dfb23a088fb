"""Detector heads with several outputs, found from the outputs' roles and shapes and decoded into
boxes as their users decode them; ``tasks._detect`` judges the boxes by mAP.

- ``gfl``: Generalized Focal Loss / DFL heads (PicoDet, NanoDet, YOLOv6 and YOLOv8 exported with
  the distribution not fused): per stride, class scores (A, C) and distance bins (A, 4·B); the
  stride of each level from its anchor count and the input size (or, for one concatenated pair,
  the set of strides whose grids add up to the count). A box is the anchor centre minus and plus
  the expected distance of each side (softmax over its B bins, the mean bin) times the stride.
- ``centernet``: a class heatmap (C, h, w) with a size map (2, h, w) and optionally an offset
  map (2, h, w) and landmark maps: each 3×3 peak is an object, its box the size around the peak
  (plus the offset) times the stride (the input size over h); sizes given as logarithms (mostly
  negative) are exponentiated first.
- ``anchors``: SSD / RetinaNet / RetinaFace: per anchor, box deltas (A, 4) and class scores
  (A, C) (softmax with a background class first, or sigmoid); priors laid on strides 8, 16, 32
  and 64 with as many anchors per position as the count needs, each of size 4·stride·2^(k/2), and
  the deltas decoded with the usual variances (0.1, 0.2).

Each decoder returns per image (boxes x1 y1 x2 y2, scores, classes) above ``confidence`` after
per-class NMS; the original's outputs and the pruned model's go through the same decoder, so a
stride or prior convention that differs from the exporter's moves both alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import numpy as np

from ..errors import OnnxpruneError
from .roles import OutputRole, window_max

__all__ = ["Head", "HEADS", "find_head", "decode_head", "ungrid"]

Head = Literal["gfl", "centernet", "anchors"]
HEADS: tuple[Head, ...] = get_args(Head)
STRIDES = (8, 16, 32, 64, 128)
VARIANCES = (0.1, 0.2)
Decoded = list[tuple[np.ndarray, np.ndarray, np.ndarray]]


def find_head(roles: tuple[OutputRole, ...], samples: list[tuple[int, ...]]) -> Head | None:
    """Which multi-output head the outputs form, or None."""
    kinds = [r.role for r in roles]
    if len(roles) < 2 or len(samples) != len(roles):
        return None
    if "distribution" in kinds:  # found only beside another output of as many candidates: the scores
        return "gfl"
    maps = [(k, s) for k, s in zip(kinds, samples) if len(s) == 3]
    heat = [s for k, s in maps if k == "scores"]
    if heat and any(k == "regression" and s[0] == 2 and s[1:] == heat[0][1:] for k, s in maps):
        return "centernet"
    rows = [(k, s) for k, s in zip(kinds, samples) if len(s) == 2]
    boxes = [s for k, s in rows if k == "regression" and s[1] == 4]
    if boxes and any(k in ("scores", "probabilities", "logits") and s[0] == boxes[0][0] for k, s in rows):
        return "anchors"
    return None


def decode_head(kind: str, outputs: list[np.ndarray], roles: tuple[OutputRole, ...], input_size: tuple[int, int],
                confidence: float, select: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Decoded:
    """Per image: boxes, scores and classes of the head ``kind``, kept by ``select(boxes, scores,
    classes, confidence)`` (``tasks.best_boxes``: the threshold, the best candidates, NMS)."""
    if kind == "gfl":
        candidates = _gfl(outputs, roles, input_size)
    elif kind == "centernet":
        candidates = _centernet(outputs, roles, input_size, confidence)
    elif kind == "anchors":
        candidates = _anchors(outputs, roles, input_size)
    else:
        raise OnnxpruneError(f"unknown detector head {kind!r}; known: {', '.join(HEADS)}")
    decoded = []
    for boxes, class_scores in candidates:
        classes = class_scores.argmax(1)
        decoded.append(select(boxes, class_scores[np.arange(len(classes)), classes], classes, confidence))
    return decoded


def ungrid(output: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A YOLOX head exported without its decode — (N, A, 5 + C) rows of grid offsets and log sizes,
    A the cells of strides 8, 16 and 32 — in pixels, as YOLOX's demo_postprocess turns them:
    centre (offset + cell) × stride, size exp(log size) × stride. Decoded outputs (centres in
    pixels, most far from the cell's own 0-2) come back unchanged."""
    height, width = size
    try:
        levels = _split_levels(output.shape[1], height, width)
    except OnnxpruneError:
        return output
    if len(levels) != 3 or levels[0][0] != 8 or float(np.median(np.abs(output[..., :2]))) > 2.0:
        return output
    cells, strides = [], []
    for stride, count in levels:
        centres, _, _ = _grid(stride, height, width, count)
        cells.append(centres / stride - 0.5)  # the cell's corner index, as YOLOX's grid holds it
        strides.append(np.full((count, 1), stride, np.float32))
    cell, stride_of = np.concatenate(cells), np.concatenate(strides)
    decoded = output.astype(np.float32).copy()
    decoded[..., :2] = (decoded[..., :2] + cell) * stride_of
    decoded[..., 2:4] = np.exp(np.clip(decoded[..., 2:4], -20, 20)) * stride_of
    return decoded


def _probabilities(x: np.ndarray) -> np.ndarray:
    """Scores as probabilities: kept where they already are, else through a sigmoid."""
    x = x.astype(np.float32)
    return x if x.min(initial=0) >= 0 and x.max(initial=0) <= 1 else 1 / (1 + np.exp(-x))


def _grid(stride: float, height: int, width: int, count: int) -> tuple[np.ndarray, int, int]:
    """Anchor centres (count, 2) of one level, row by row, and its grid's rows and columns."""
    rows, cols = int(np.ceil(height / stride)), int(np.ceil(width / stride))
    if rows * cols != count:  # a grid that does not divide the input evenly: trust the count
        cols = max(1, round((count * width / height) ** 0.5))
        rows = count // cols
    ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    return (np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32) + 0.5) * stride, rows, cols


def _level_strides(counts: list[int], height: int, width: int) -> list[float]:
    """Each level's stride from its anchor count: the input's area over the count's, squared off."""
    return [float(2 ** round(np.log2((height * width / c) ** 0.5))) for c in counts]


def _split_levels(count: int, height: int, width: int, per_position: int = 1) -> list[tuple[float, int]]:
    """A concatenated level set: the run of strides whose grids (× anchors per position) add up."""
    for first in range(len(STRIDES)):
        total, levels = 0, []
        for stride in STRIDES[first:]:
            cells = int(np.ceil(height / stride)) * int(np.ceil(width / stride)) * per_position
            total += cells
            levels.append((float(stride), cells))
            if total == count:
                return levels
            if total > count:
                break
    raise OnnxpruneError(f"cannot lay {count} anchors of a {height}×{width} input on strides "
                         f"{', '.join(map(str, STRIDES))}; name the head with --box-layout or judge with --metric")


def _gfl(outputs: list[np.ndarray], roles: tuple[OutputRole, ...], size: tuple[int, int]
         ) -> list[tuple[np.ndarray, np.ndarray]]:
    height, width = size
    bins = [k for k, r in enumerate(roles) if r.role == "distribution"]
    scores = [k for k, r in enumerate(roles) if r.role != "distribution" and outputs[k].ndim == 3]
    pairs = []
    for b in bins:
        match = next((s for s in scores if outputs[s].shape[1] == outputs[b].shape[1]), None)
        if match is None:
            raise OnnxpruneError(f"the distance bins {roles[b].name} have no class scores of as many anchors")
        scores.remove(match)
        pairs.append((match, b))
    levels: list[tuple[int, int, float, slice]] = []  # (scores output, bins output, stride, anchors)
    if len(pairs) == 1:
        s, b = pairs[0]
        start = 0
        for stride, cells in _split_levels(outputs[b].shape[1], height, width):
            levels.append((s, b, stride, slice(start, start + cells)))
            start += cells
    else:
        strides = _level_strides([outputs[b].shape[1] for _, b in pairs], height, width)
        levels = [(s, b, stride, slice(None)) for (s, b), stride in zip(pairs, strides)]
    per_image: list[tuple[list[np.ndarray], list[np.ndarray]]] = [([], []) for _ in range(len(outputs[0]))]
    for s, b, stride, part in levels:
        dist = outputs[b][:, part].astype(np.float64)
        n, a, w = dist.shape
        logits = dist.reshape(n, a, 4, w // 4)
        logits = logits - logits.max(-1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(-1, keepdims=True)
        sides = (p * np.arange(w // 4)).sum(-1) * stride  # left, top, right, bottom
        centres, _, _ = _grid(stride, height, width, a)
        boxes = np.concatenate([centres - sides[..., :2], centres + sides[..., 2:]], -1).astype(np.float32)
        probs = _probabilities(outputs[s][:, part])
        for i in range(n):
            per_image[i][0].append(boxes[i])
            per_image[i][1].append(probs[i])
    return [(np.concatenate(b), np.concatenate(c)) for b, c in per_image]


def _centernet(outputs: list[np.ndarray], roles: tuple[OutputRole, ...], size: tuple[int, int], confidence: float
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    height, _ = size
    heat_k = next(k for k, r in enumerate(roles) if r.role == "scores" and outputs[k].ndim == 4)
    heat = _probabilities(outputs[heat_k])
    h, w = heat.shape[2:]
    twos = [k for k, r in enumerate(roles) if r.role == "regression" and outputs[k].ndim == 4
            and outputs[k].shape[1:] == (2, h, w)]
    twos.sort(key=lambda k: -float(np.abs(outputs[k]).mean()))  # sizes are larger than sub-cell offsets
    sizes = outputs[twos[0]].astype(np.float32)
    if float(np.median(sizes)) < 0:  # logarithms of sizes (CenterFace): exp them
        sizes = np.exp(np.clip(sizes, -20, 20))
    offsets = outputs[twos[1]].astype(np.float32) if len(twos) > 1 else np.zeros_like(sizes)
    stride = height / h
    peaks = heat >= window_max(heat, 1)
    found = []
    for i in range(len(heat)):
        c, y, x = np.nonzero(peaks[i] & (heat[i] >= confidence))
        order = np.argsort(-heat[i, c, y, x], kind="stable")[:100]
        c, y, x = c[order], y[order], x[order]
        cx, cy = (x + offsets[i, 0, y, x]) * stride, (y + offsets[i, 1, y, x]) * stride
        bw, bh = (np.maximum(sizes[i, k, y, x] * stride, 1.0) for k in (0, 1))  # a point is still a pixel
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1).astype(np.float32)
        one_hot = np.zeros((len(c), heat.shape[1]), np.float32)
        one_hot[np.arange(len(c)), c] = heat[i, c, y, x]
        found.append((boxes, one_hot))
    return found


def _anchors(outputs: list[np.ndarray], roles: tuple[OutputRole, ...], size: tuple[int, int]
             ) -> list[tuple[np.ndarray, np.ndarray]]:
    height, width = size
    loc_k = next(k for k, r in enumerate(roles) if r.role == "regression" and outputs[k].ndim == 3
                 and outputs[k].shape[2] == 4)
    count = outputs[loc_k].shape[1]
    conf_k = next(k for k, r in enumerate(roles) if r.role in ("scores", "probabilities", "logits")
                  and outputs[k].ndim == 3 and outputs[k].shape[1] == count)
    priors = _priors(count, height, width)
    deltas = outputs[loc_k].astype(np.float32)
    centres = priors[:, :2] + deltas[..., :2] * VARIANCES[0] * priors[:, 2:]
    sides = priors[:, 2:] * np.exp(np.clip(deltas[..., 2:] * VARIANCES[1], -10, 10))
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], -1)
    scores = outputs[conf_k].astype(np.float32)
    if roles[conf_k].role == "probabilities" and scores.shape[2] >= 2:
        scores = scores[..., 1:]  # a softmax's first class is the background
    elif roles[conf_k].role == "logits":
        scores = _probabilities(scores)
    return [(boxes[i], scores[i]) for i in range(len(boxes))]


def _priors(count: int, height: int, width: int) -> np.ndarray:
    """(count, 4) priors cx cy w h on strides 8-64, with the anchors per position the count needs."""
    for per_position in (1, 2, 3, 4, 6, 9):
        try:
            levels = _split_levels(count, height, width, per_position)
        except OnnxpruneError:
            continue
        priors = []
        for stride, cells in levels:
            centres, _, _ = _grid(stride, height, width, cells // per_position)
            for centre in centres:
                for k in range(per_position):
                    side = 4 * stride * 2 ** (k / 2)
                    priors.append((centre[0], centre[1], side, side))
        return np.asarray(priors, np.float32)
    raise OnnxpruneError(f"cannot lay {count} anchors of a {height}×{width} input on strides 8-64 with 1-9 "
                         "anchors per position; judge this detector with --metric")
