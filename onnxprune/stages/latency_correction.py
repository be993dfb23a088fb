"""A latency target is held by measuring: the rounds prune to the latency the tables predict,
then the device decides, and where it measures more, one or two more rounds aim lower."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import onnx

from ..measure.bench import BenchResult, benchmark
from ..report import RoundRecord
from ..torchview.distributed import on_main
from ..torchview.view import TorchView
from .context import Run
from .passes import Pass, PassState, Steps
from .planner import WidthPlan, planned_rounds
from .rounds import prune_round

__all__ = ["LATENCY_CORRECTION", "correct_latency", "corrected_goal", "latency_met", "measured_share"]

log = logging.getLogger(__name__)


def measured_share(run: Run, model: onnx.ModelProto) -> float:
    """The model's median latency over the original's, timed side by side on the run's device."""
    check = benchmark([("original", run.model.original.model), ("pruned", model)], run.model.original.image,
                      device=run.hardware.ort_device, threads=run.hardware.threads, runs=run.options.bench_runs)
    return check.timings[1].median_ms / check.timings[0].median_ms


def correct_latency(run: Run, plan: WidthPlan, view: TorchView, records: list[RoundRecord],
                    measure: Callable[..., float] = measured_share) -> TorchView:
    """The prediction chose; the device decides. Where the measured latency (``measure(run,
    model)``) is above the target, a new predicted goal is taken from how measured followed
    predicted so far and one more round runs (twice at most; appended to ``records``). The median
    decides here, not median + noise: a noisy check must not let a miss through."""
    o, target = run.options, run.options.target_latency
    if target is None:
        return view
    tables, base_ms = plan.timed()
    points = [(1.0, 1.0)]  # (predicted, measured) shares of the original; the original is exact
    for attempt in range(1, 3):
        measured = on_main(lambda: measure(run, view.model))
        if measured <= target:
            break
        analysis = view.groups()
        predicted = tables.predict(analysis.cost, analysis.shapes) / base_ms
        points.append((predicted, measured))
        log.info("measured latency %.1f%% of the original against %.1f%% predicted: pruning once more",
                 100 * measured, 100 * predicted)
        goal_ms = base_ms * corrected_goal(points, target)
        view, record, reached = prune_round(run, plan, view, analysis, planned_rounds(o) + attempt,
                                            f"latency correction {attempt}", plan.target_flops, goal_ms, soft=False)
        records.append(record)
        if not reached:
            break
    return view


def corrected_goal(points: list[tuple[float, float]], target: float) -> float:
    """The predicted latency share to aim for so that the measured share lands on ``target``.

    On the line through the last two (predicted, measured) points: where fixed per-node costs
    remain (MobileNetV2 on a CPU), measured latency falls more slowly than predicted, which
    scaling by measured ÷ predicted (a line through the origin) ignores — it took two
    corrections to come within 8 % of the target. Where the points do not slope down together
    (noise), that scaling is used; a nearly flat line (noise too) may not go below half of it.
    """
    (p0, m0), (p1, m1) = points[-2:]
    proportional = p1 * target / m1
    if p0 > p1 and m0 > m1:
        return max(p1 - (m1 - target) * (p0 - p1) / (m0 - m1), proportional / 2)
    return proportional


def latency_met(result: BenchResult, target: float) -> tuple[float, bool]:
    """The pruned model's measured share of the original's latency, and whether it is within the
    target give or take the timing noise (the report's verdict)."""
    original, pruned = result.timings[:2]
    measured = pruned.median_ms / original.median_ms
    return measured, measured <= target * (1 + max(original.spread, pruned.spread))


def _correction_pass(run: Run, plan: WidthPlan, state: PassState, steps: Steps) -> PassState:  # noqa: ARG001
    assert state.view is not None  # (required)
    records = list(state.records)
    view = correct_latency(run, plan, state.view, records)
    return replace(state, view=view, records=tuple(records))


def _latency_to_check(run: Run, state: PassState) -> bool:
    o = run.options
    if o.target_latency is None or not state.reached or state.stopped:
        return False
    if o.latency_table:
        log.info("the latency target is held by the tables given (--latency-table): the device they were measured "
                 "on is not this one, so no correction by measuring here")
        return False
    return True


LATENCY_CORRECTION = Pass("latency correction", _correction_pass, requires=("view",), ensures=("view",),
                          applies=_latency_to_check)
