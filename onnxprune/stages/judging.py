"""The one judge of a pruned model: its quality on the held-out data against the original's, by
the task's measure that --max-drop limits. The rounds, the budget search, the final model and
the report all ask it."""

from __future__ import annotations

from dataclasses import replace

import onnx

from ..graph.runtime import run_batched
from ..measure.intervals import drop_interval, independent, interval
from ..measure.metrics import QualityDrop, compare_outputs
from ..measure.tasks import measure, output_figures
from ..report import Quality
from .context import Run

__all__ = ["held_out_quality"]


def held_out_quality(run: Run, model: onnx.ModelProto | None, intervals: bool = False,
                     judging: bool = False) -> Quality:
    """The original's and ``model``'s quality on the held-out data (``None``: the original
    itself), and what was lost by the task's measure --max-drop limits: the one judge of the
    rounds, the budget and the written model. With ``intervals``, the 95 % intervals the number
    of held-out items allows (a bootstrap: the final figures, not every round's). Where the
    budget chooses among rounds, ``judging`` takes the items decisions are made on, and the
    figure reported for the kept model comes from the others, which no decision saw."""
    val, reference, clusters = run.judge.held.part(judging)
    labels = val.labels
    before_m, before = run.judge.original(judging, intervals)
    before = dict(before)
    if model is None:
        after_m, after = before_m, dict(before)
    else:
        outputs = run_batched(model, run.model.original.image.name, val)
        after_m = measure(run.judge.task, outputs, reference, labels, run.judge.task_settings, full=intervals,
                          clusters=clusters)
        after = compare_outputs(outputs, reference, labels) | after_m.extras
        after[after_m.metric] = after_m.figure()
    points = 100 * (before[before_m.metric] - after[after_m.metric])
    drop = QualityDrop(after_m.metric, points, run.options.drop_limit, items=independent(after_m.items, clusters),
                       views=run.judge.held.views, reference_items=before_m.reference_items,
                       undefined=before_m.undefined)
    bounds: dict[str, tuple[float, float]] = {}
    figures: list[dict] = []
    if intervals:
        low, high = drop_interval(before_m, after_m, run.options.seed, clusters)
        drop = replace(drop, low=low, high=high)
        bounds = {"before": interval(before_m, run.options.seed, clusters),
                  "after": interval(after_m, run.options.seed, clusters)}
        mine = reference if model is None else outputs
        figures = [{**row, "after": row.pop("figure")}
                   for row in output_figures(mine, reference, run.judge.task_settings.roles, clusters)]
    return Quality(before, after, len(val), drop, run.judge.task, bounds, tuple(figures))
