"""How good a model is on held-out data: accuracy with labels, agreement with the original, and
the quality budget (``--max-drop``) that a pruned model must stay within."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.sources import UNLABELLED
from ..graph.output_shapes import feature_axis, is_classifier_output
from . import intervals

__all__ = ["compare_outputs", "explained_variance", "QualityDrop"]


def compare_outputs(
    outputs: list[np.ndarray], reference: list[np.ndarray], labels: np.ndarray | None
) -> dict[str, float]:
    """Accuracy (with labels), top-1 agreement (classifiers), cosine similarity and MSE."""
    out, ref = outputs[0].astype(np.float64), reference[0].astype(np.float64)
    result: dict[str, float] = {}
    if is_classifier_output(out.shape):
        result["top1_agreement"] = float((out.argmax(1) == ref.argmax(1)).mean())
        known = labels != UNLABELLED if labels is not None else None
        if known is not None and known.any():
            result["accuracy"] = float((out.argmax(1) == labels)[known].mean())
    flat_out, flat_ref = out.reshape(len(out), -1), ref.reshape(len(ref), -1)
    norm_out, norm_ref = np.linalg.norm(flat_out, axis=1), np.linalg.norm(flat_ref, axis=1)
    denom = norm_out * norm_ref
    # no floor on the denominator: a detector's near-empty maps (norms ~1e-7) are still directions;
    # two all-zero outputs are the same output (1), one all-zero against another is not (0)
    both_zero = (norm_out == 0) & (norm_ref == 0)
    cosine = np.where(denom > 0, (flat_out * flat_ref).sum(1) / np.where(denom > 0, denom, 1.0), both_zero)
    result["cosine"] = float(cosine.mean())
    result["mse"] = float(((flat_out - flat_ref) ** 2).mean())
    result["explained_variance"] = float(np.mean([explained_variance(o, r) for o, r in zip(outputs, reference)]))
    return result


def explained_variance(output: np.ndarray, reference: np.ndarray) -> float:
    """How much of the original output's variation the pruned one reproduces, in [0, 1]: the R²
    of each feature (``feature_axis``), averaged over features, so a detector's class scores
    count as much as box coordinates hundreds of times their size.
    """
    out, ref = np.asarray(output, np.float64), np.asarray(reference, np.float64)
    if ref.ndim < 2 or ref.size == 0:
        return 1.0 if np.allclose(out, ref) else 0.0
    axis = feature_axis(ref.shape)
    ref_f = np.moveaxis(ref, axis, 0).reshape(ref.shape[axis], -1)
    out_f = np.moveaxis(out, axis, 0).reshape(ref.shape[axis], -1)
    residual = ((out_f - ref_f) ** 2).sum(1)
    spread = ((ref_f - ref_f.mean(1, keepdims=True)) ** 2).sum(1)
    # a feature (nearly) constant on the data, e.g. the score of a class no image shows, is
    # judged against a hundredth of the median feature's variation, not its own noise
    floor = 1e-2 * float(np.median(spread)) + 1e-24 * ref_f.shape[1]
    r2 = 1 - residual / np.maximum(spread, floor)
    return float(np.clip(r2, 0.0, 1.0).mean())


@dataclass(frozen=True)
class QualityDrop:
    """Points of quality lost on the held-out data, by the measure that fits the model's task,
    with the 95 % interval its number of items allows (``intervals.drop_interval``)."""

    metric: str  # e.g. "accuracy", "top1_agreement", "map50", "miou", "string_agreement"
    points: float  # 100 × (before − after)
    max_points: float
    low: float | None = None  # the interval of ``points``; None where it was not computed
    high: float | None = None
    items: int = 0  # held-out images (independent items) judged
    views: int = 1  # inputs judged per held-out image (the image and shifts of it)
    reference_items: int | None = None  # what the original's outputs held to compare (boxes, masks, …)
    undefined: str | None = None  # why the task's measure could not judge, where the outputs' measure stood in

    @property
    def within(self) -> bool:
        return self.points <= self.max_points + 1e-9

    @property
    def resolved(self) -> bool:
        """The interval is no wider than the budget: the held-out share can tell."""
        return self.low is None or self.high is None or self.high - self.low <= self.max_points + 1e-9

    def items_to_resolve(self) -> int:
        if self.low is None or self.high is None:
            return self.items
        return intervals.items_to_resolve(self.high - self.low, self.items, self.max_points)

    def as_dict(self) -> dict[str, object]:
        d: dict[str, object] = {"metric": self.metric, "points": self.points, "max": self.max_points,
                                "within": self.within}
        if self.reference_items is not None:
            d["reference_items"] = self.reference_items
        if self.undefined:
            d["undefined"] = self.undefined
        if self.low is not None and self.high is not None:
            d |= {"interval": [self.low, self.high], "resolved": self.resolved, "items": self.items,
                  "views": self.views, "items_to_resolve": self.items_to_resolve()}
        return d

    def message(self) -> str:
        return (f"the pruned model loses {self.points:.1f} points of {self.metric.replace('_', ' ')} on the held-out "
                f"data, more than --max-drop {self.max_points:g}; no model was written (the report was) — "
                "try a higher target, more data or more --epochs, or allow more with --max-drop")

    def unresolved_note(self) -> str | None:
        """One line when the drop's interval is wider than the budget: the held-out share cannot
        resolve it."""
        if self.resolved:
            return None
        seen = f" (seen {self.views} ways each)" if self.views > 1 else ""
        return (f"{self.items} held-out images{seen} cannot resolve --max-drop {self.max_points:g}: the 95 % interval "
                f"of the points lost is {self.low:+.1f} to {self.high:+.1f}, wider than the budget; about "
                f"{self.items_to_resolve()} would narrow it to {self.max_points:g} (more images or --val-data)")
