"""What each output of a model is, and the measure a user of that output would judge it by.

A model's outputs are rarely alike: a face stage returns box deltas, landmarks and a face
probability; a CenterNet head a sigmoid heatmap beside size and offset maps; a GFL head class
scores beside distance distributions. One measure over all of them lets the large maps drown the
small one that decides what is found, and "top-1 agreement" of four box deltas means nothing. So
each output gets a role, found from the op that makes it and its shape (``find_roles``), and a
measure for that role (``role_measure``); where no task decoder judges the model, the worst
output's measure is the verdict (``worst_output``).

Roles and their measures (each 1.0 for the original against itself):
- probabilities (Softmax, or Sigmoid over a vector) and logits: top-1 agreement along the class axis;
- scores (Sigmoid over candidates or a map: a heatmap, a detector's per-anchor class scores):
  F1 of the positives — local 3×3 peaks of a map, or candidates — above ``SCORE_THRESHOLD``,
  matched to the original's within ``PEAK_RADIUS`` cells; undefined where the original has none;
- distribution (GFL/DFL bins, 4 × (R+1) per candidate): explained variance of the expected
  distances, as users decode them (softmax over the bins, then the mean bin);
- embedding (a normalized vector): nearest-neighbour agreement;
- regression (box deltas, landmarks, sizes, offsets, any other linear output): explained variance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

from .metrics import explained_variance

if TYPE_CHECKING:  # annotations only: the measures themselves work on arrays
    import onnx

__all__ = ["Role", "ROLES", "OutputRole", "RoleFigure", "find_roles", "normalizes", "role_measure", "neighbours", "window_max",
           "SCORE_THRESHOLD"]

Role = Literal["probabilities", "logits", "scores", "distribution", "embedding", "regression"]
ROLES: tuple[Role, ...] = get_args(Role)
SCORE_THRESHOLD = 0.3  # a positive of a sigmoid heatmap or candidate score (CenterNet decoders use 0.3-0.5)
PEAK_RADIUS = 1  # a pruned model's peak this many cells from the original's is the same object
REGRESSION_WIDTHS = (4, 10)  # box deltas, five landmarks: never class scores beside another output
NEAREST_KEPT = 5  # an embedding's neighbour agrees when it is among the original's 5 nearest images
PASS_THROUGH = ("Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Cast")


@dataclass(frozen=True)
class OutputRole:
    """One output's role and how it was found (``why``, for the report)."""

    name: str
    role: Role
    why: str
    class_axis: int = 0  # for probabilities and logits: the per-sample axis of the classes


def _producer(model: onnx.ModelProto, name: str) -> onnx.NodeProto | None:
    """The op that computes ``name``, looking through reshapes, transposes and concatenations."""
    producers = {o: n for n in model.graph.node for o in n.output}
    node = producers.get(name)
    seen = 0
    while node is not None and node.op_type in PASS_THROUGH and node.input and seen < 8:
        node = producers.get(node.input[0])
        seen += 1
    return node


def normalizes(model: onnx.ModelProto, name: str) -> bool:
    """The output ``name`` is a vector divided by its norm: LpNormalization, or Div by a ReduceL2
    or Sqrt (through a few ops such as the Clip or Max that keeps it off zero)."""
    node = _producer(model, name)
    if node is None:
        return False
    if node.op_type == "LpNormalization":
        return True
    if node.op_type != "Div" or len(node.input) < 2:
        return False
    divisor = _producer(model, node.input[1])
    for _ in range(4):
        if divisor is None:
            return False
        if divisor.op_type in ("ReduceL2", "Sqrt", "LpNormalization"):
            return True
        divisor = _producer(model, divisor.input[0]) if divisor.input else None
    return False


def find_roles(model: onnx.ModelProto, samples: list[tuple[int, ...]]) -> tuple[OutputRole, ...]:
    """Each output's role from the op that makes it and its per-sample shape (batch first)."""
    names = [o.name for o in model.graph.output]
    roles = []
    for name, sample in zip(names, samples):
        node = _producer(model, name)
        op = node.op_type if node is not None else "input"
        several = len(samples) > 1
        if len(sample) == 1:
            width = sample[0]
            if op in ("Softmax", "LogSoftmax") and width >= 2:
                roles.append(OutputRole(name, "probabilities", f"{op} over {width}"))
            elif op == "Sigmoid" and width >= 2:
                roles.append(OutputRole(name, "scores", f"Sigmoid over {width}"))
            elif normalizes(model, name):
                roles.append(OutputRole(name, "embedding", f"a {width}-wide vector divided by its norm"))
            elif width < 2 or (width in REGRESSION_WIDTHS and (several or width == 4)):
                roles.append(OutputRole(name, "regression", f"{width} wide, linear ({op})"))
            else:
                roles.append(OutputRole(name, "logits", f"{width} wide, linear ({op}): class scores"))
        elif len(sample) == 2:
            count, width = sample
            if op in ("Softmax", "LogSoftmax") and width >= 2:
                roles.append(OutputRole(name, "probabilities", f"{op} over {width} per row", class_axis=1))
            elif op == "Sigmoid":
                roles.append(OutputRole(name, "scores", f"Sigmoid over {count}×{width} candidates"))
            elif several and width % 4 == 0 and width >= 16 and \
                    any(s[0] == count and s != sample for s in samples if len(s) == 2):  # beside class scores
                roles.append(OutputRole(name, "distribution", f"{count} candidates × 4 sides × {width // 4} bins "
                                                              f"beside class scores of as many candidates"))
            else:
                roles.append(OutputRole(name, "regression", f"{count}×{width}, linear ({op})"))
        elif len(sample) == 3 and op == "Sigmoid" and min(sample[1:]) >= 4:
            roles.append(OutputRole(name, "scores", f"Sigmoid map {sample[0]}×{sample[1]}×{sample[2]}: a heatmap"))
        elif len(sample) == 3 and op in ("Softmax", "LogSoftmax"):
            last = next((a.i for a in node.attribute if a.name == "axis"), 1) in (-1, 3)  # type: ignore[union-attr]
            roles.append(OutputRole(name, "probabilities", f"{op} over {sample[-1] if last else sample[0]} "
                                                           "classes per position", class_axis=2 if last else 0))
        else:
            roles.append(OutputRole(name, "regression", f"{'×'.join(map(str, sample))}, linear ({op})"))
    return tuple(roles)


# -- measures, one per role -------------------------------------------------------------------
# Each returns per-item arrays so that any subset of items (a bootstrap resample) has a figure:
# (figure of a subset, hits per item or None, reference items, metric name).

@dataclass(frozen=True)
class RoleFigure:
    metric: str
    value: object  # Callable[[np.ndarray], float]
    hits: np.ndarray | None
    reference_items: int | None  # positives the figure compares (None: every item counts)


def role_measure(role: OutputRole, out: np.ndarray, ref: np.ndarray, clusters: np.ndarray | None = None
                 ) -> RoleFigure:
    """``out`` against the original's ``ref`` (both batch first) by ``role``'s measure. A scores
    output whose reference has no positive falls back to explained variance (``reference_items`` 0)."""
    if role.role in ("probabilities", "logits"):
        axis = _summing_axis(ref) if role.role == "probabilities" else None
        axis = 1 + role.class_axis if axis is None else axis
        same = (out.argmax(axis) == ref.argmax(axis)).reshape(len(out), -1).astype(np.float64)
        if same.shape[1] == 1:
            hits = same[:, 0]
            return RoleFigure("top1_agreement", lambda idx: float(hits[idx].mean()) if len(idx) else 1.0, hits, None)
        per_item = same.mean(1)
        return RoleFigure("position_agreement", lambda idx: float(per_item[idx].mean()) if len(idx) else 1.0,
                          None, None)
    if role.role == "scores":
        return _score_f1(out, ref)
    if role.role == "distribution":
        return _explained(_expected_distances(out), _expected_distances(ref), "distance_explained_variance")
    if role.role == "embedding":
        return neighbours(out, ref, clusters)
    return _explained(out, ref, "explained_variance")


def _summing_axis(probabilities: np.ndarray) -> int | None:
    """The axis along which a softmax output sums to one (a channels-last map's last, say), or None."""
    for axis in range(probabilities.ndim - 1, 0, -1):
        if probabilities.shape[axis] >= 2 and np.allclose(probabilities.sum(axis), 1.0, atol=1e-3):
            return axis
    return None


def _explained(out: np.ndarray, ref: np.ndarray, metric: str, reference_items: int | None = None) -> RoleFigure:
    return RoleFigure(metric, lambda idx: explained_variance(out[idx], ref[idx]) if len(idx) else 1.0, None,
                      reference_items)


def _expected_distances(bins: np.ndarray) -> np.ndarray:
    """(N, A, 4·B) bin logits → (N, A, 4) expected distances, as GFL/DFL decoders compute them."""
    n, a, width = bins.shape
    logits = bins.reshape(n, a, 4, width // 4).astype(np.float64)
    logits -= logits.max(-1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(-1, keepdims=True)
    return (p * np.arange(width // 4)).sum(-1)


def window_max(x: np.ndarray, radius: int, outside: float = -np.inf) -> np.ndarray:
    """Each cell of an (N, C, H, W) map replaced by the largest value within ``radius`` cells."""
    h, w = x.shape[2:]
    padded = np.pad(x, ((0, 0), (0, 0), (radius, radius), (radius, radius)), constant_values=outside)
    side = 2 * radius + 1
    return np.max([padded[:, :, dy:dy + h, dx:dx + w] for dy in range(side) for dx in range(side)], axis=0)


def _positives(x: np.ndarray) -> np.ndarray:
    """Boolean positives per item: local 3×3 peaks above the threshold on a map (C, H, W), or
    candidates above it otherwise."""
    above = x > SCORE_THRESHOLD
    if x.ndim != 4:
        return above
    return above & (x >= window_max(x, 1))


def _score_f1(out: np.ndarray, ref: np.ndarray) -> RoleFigure:
    """F1 of the pruned model's positives against the original's, per item (tp, ref, pred) so any
    subset sums them; a map's peaks match within ``PEAK_RADIUS`` cells of the same channel."""
    mine, theirs = _positives(out), _positives(ref)
    if theirs.ndim == 4 and PEAK_RADIUS:
        near = window_max(theirs, PEAK_RADIUS, outside=False)
        tp = (mine & near).reshape(len(out), -1).sum(1)
        tp = np.minimum(tp, theirs.reshape(len(out), -1).sum(1))
    else:
        tp = (mine & theirs).reshape(len(out), -1).sum(1)
    n_ref = theirs.reshape(len(out), -1).sum(1)
    n_pred = mine.reshape(len(out), -1).sum(1)
    total = int(n_ref.sum())
    if total == 0:
        return _explained(out, ref, "explained_variance", reference_items=0)

    def value(idx: np.ndarray) -> float:
        both = n_ref[idx].sum() + n_pred[idx].sum()
        return float(2 * tp[idx].sum() / both) if both else 1.0

    return RoleFigure("positive_f1", value, None, total)


def neighbours(out: np.ndarray, ref: np.ndarray, clusters: np.ndarray | None = None) -> RoleFigure:
    """Whether each item's nearest other image by the pruned model's embedding (cosine) is one of
    the original's ``NEAREST_KEPT`` nearest (fewer where the candidates are few). Not the exact
    nearest: among near-duplicates that flips under changes no user would call a change — the
    original shifted by one pixel keeps 56 % of its exact neighbours on 200 rendered letters,
    98 % within its 5 nearest, and letter retrieval moves by 1 point
    (``benchmarks/results/embed_measure.txt``). Where items are views of held-out images
    (``clusters``: the image of each item), a view's neighbours are the other images, each as
    near as its nearest view."""
    def unit(x: np.ndarray) -> np.ndarray:
        x = x.reshape(len(x), -1).astype(np.float64)
        return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

    a, b = unit(out), unit(ref)
    image = np.arange(len(a)) if clusters is None else np.unique(clusters, return_inverse=True)[1]
    images = int(image.max()) + 1 if len(image) else 0
    if images < 3:
        hits = ((a * b).sum(1) > 0.9).astype(np.float64)
        return RoleFigure("cosine_above_0.9", lambda idx: float(hits[idx].mean()) if len(idx) else 1.0, hits, None)

    def by_image(x: np.ndarray) -> np.ndarray:
        """Each item's similarity to each image (its nearest view); its own image never a neighbour."""
        s = x @ x.T
        if clusters is None:
            per_image = s
        else:
            per_image = np.stack([s[:, image == k].max(1) for k in range(images)], axis=1)
        per_image[np.arange(len(x)), image] = -np.inf
        return per_image

    mine, theirs = by_image(a), by_image(b)
    kept = max(1, min(NEAREST_KEPT, (images - 1) // 10))
    nearest_theirs = np.argsort(-theirs, axis=1)[:, :kept]
    hits = (nearest_theirs == mine.argmax(1)[:, None]).any(1).astype(np.float64)
    return RoleFigure("neighbour_agreement", lambda idx: float(hits[idx].mean()) if len(idx) else 1.0, hits, None)
