"""The one judge of a pruned model: the held-out items (each image as several views where they are
few) and the task's measure that --max-drop limits. The rounds, the budget search, the final
model and the report all ask ``run.judge.quality``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

import numpy as np
import onnx

from ..data.sources import Dataset
from ..graph.runtime import run_batched
from ..measure.intervals import drop_interval, independent, interval
from ..measure.metrics import QualityDrop, compare_outputs
from ..measure.tasks import Measure, Task, TaskSettings, measure, output_figures
from ..report import Quality

__all__ = ["HeldOut", "Judge"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeldOut:
    """What judges the pruned model: the held-out images, each as several views where they are
    few (the images themselves first, ``prepare.held_out_views``), the original's outputs on every
    view, the image each view shows, and which images the decisions are made on."""

    items: Dataset
    reference: list[np.ndarray]  # the original's outputs on ``items``
    image_of: np.ndarray  # per item, the position of the held-out image it is a view of
    judged: np.ndarray | None = None  # held-out images the decisions are made on; the others report

    @property
    def images(self) -> int:
        return len(np.unique(self.image_of))

    @property
    def views(self) -> int:
        return len(self.items) // max(self.images, 1)

    def part(self, judging: bool) -> tuple[Dataset, list[np.ndarray], np.ndarray | None]:
        """The items (and the original's outputs on them) that decide (``judging``) or that
        report — all of them where nothing is chosen — and the image of each where an image has
        several views (bootstraps draw whole images), else None."""
        if self.judged is None:
            positions = np.arange(len(self.items))
        else:
            images = self.judged if judging else np.setdiff1d(np.unique(self.image_of), self.judged)
            positions = np.flatnonzero(np.isin(self.image_of, images))
        clusters = self.image_of[positions] if self.views > 1 else None
        return self.items.subset(positions), [t[positions] for t in self.reference], clusters


@dataclass(frozen=True)
class Judge:
    """The one judge of a pruned model: its quality on the held-out items against the original's,
    by the task's measure that --max-drop limits (``quality``). The rounds, the budget search, the
    final model and the report all ask it; the original's figures are computed once and kept (a
    cache, not state)."""

    held: HeldOut  # ``val`` as views, and the original's outputs on them
    input_name: str  # the image input the held-out items feed
    drop_limit: float  # --max-drop, in points
    seed: int  # the bootstrap's
    task: Task = "regress"
    task_settings: TaskSettings = TaskSettings()
    _original: dict = field(default_factory=dict, repr=False, compare=False)

    def original(self, judging: bool = False, intervals: bool = False) -> tuple[Measure, dict[str, float]]:
        """The original's measure and figures on the held-out items (``held.part``), computed once
        per run and kept: every judgement of a pruned model compares with them."""
        if (judging, intervals) not in self._original:
            val, reference, clusters = self.held.part(judging)
            measured = measure(self.task, reference, reference, val.labels, self.task_settings, full=intervals,
                               clusters=clusters)
            figures = compare_outputs(reference, reference, val.labels) | measured.extras
            figures[measured.metric] = measured.figure()
            if measured.undefined and not self._original:  # said once, when first measured
                log.warning("%s on the %d held-out inputs; judging by %s instead", measured.undefined, len(val),
                            measured.metric.replace("_", " "))
            self._original[judging, intervals] = (measured, figures)
        return self._original[judging, intervals]

    @property
    def metric(self) -> str:
        """The measure --max-drop limits for this model and data (the task's, or accuracy or
        agreement as the labels allow)."""
        return self.original()[0].metric

    def quality(self, model: onnx.ModelProto | None, intervals: bool = False, judging: bool = False) -> Quality:
        """The original's and ``model``'s quality on the held-out data (``None``: the original
        itself), and what was lost by the task's measure --max-drop limits. With ``intervals``,
        the 95 % intervals the number of held-out items allows (a bootstrap: the final figures,
        not every round's). Where the budget chooses among rounds, ``judging`` takes the items
        decisions are made on, and the figure reported for the kept model comes from the others,
        which no decision saw."""
        val, reference, clusters = self.held.part(judging)
        labels = val.labels
        before_m, before = self.original(judging, intervals)
        before = dict(before)
        if model is None:
            after_m, after = before_m, dict(before)
        else:
            outputs = run_batched(model, self.input_name, val)
            after_m = measure(self.task, outputs, reference, labels, self.task_settings, full=intervals,
                              clusters=clusters)
            after = compare_outputs(outputs, reference, labels) | after_m.extras
            after[after_m.metric] = after_m.figure()
        points = 100 * (before[before_m.metric] - after[after_m.metric])
        drop = QualityDrop(after_m.metric, points, self.drop_limit, items=independent(after_m.items, clusters),
                           views=self.held.views, reference_items=before_m.reference_items,
                           undefined=before_m.undefined)
        bounds: dict[str, tuple[float, float]] = {}
        figures: list[dict] = []
        if intervals:
            low, high = drop_interval(before_m, after_m, self.seed, clusters)
            drop = replace(drop, low=low, high=high)
            bounds = {"before": interval(before_m, self.seed, clusters),
                      "after": interval(after_m, self.seed, clusters)}
            mine = reference if model is None else outputs
            figures = [{**row, "after": row.pop("figure")}
                       for row in output_figures(mine, reference, self.task_settings.roles, clusters)]
        return Quality(before, after, len(val), drop, self.task, bounds, tuple(figures))
