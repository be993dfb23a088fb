"""The planner: what the rounds aim at and may do, and which channels each round removes.

``plan_widths`` settles the plan once per run: the original's cost, the target, the width step
(measured by timing whole models with ``--round-to auto``: ``width_step``), each group's step and
floor, and the latency tables where widths are hardware-aware. The rounds then ask it for their
goals (``round_goal``, ``next_budget_goal``; how many rounds: ``planned_rounds``) and for the
channels to keep (``choose``, the ranking in ``select``); they plan nothing themselves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from math import ceil, log as ln

import numpy as np
import onnx

from ..errors import OnnxpruneError
from ..graph.flops import ModelCost, count
from ..graph.groups import GroupAnalysis, predict_shapes
from ..measure.device_table import TableFile
from ..measure.latency import LatencyModel, LocalCache, Store, measure_granularity, measure_latency
from ..options import PruneOptions
from .context import Run
from .select import Selection, floor_for, group_step, select
from .width_step import StepChoice, choose_step

__all__ = ["WidthPlan", "plan_widths", "planned_rounds", "latency_store", "BUDGET_STEP"]

log = logging.getLogger(__name__)

BUDGET_STEP = 0.15  # with --max-drop as the goal, each round removes this share of what is left


@dataclass(frozen=True)
class WidthPlan:
    """What the rounds aim at and may do: the original's cost, the target, each group's step
    and floor rule, and the latency tables when widths are hardware-aware."""

    base: ModelCost
    target_flops: int  # absolute
    original_width: dict[frozenset, int]  # by a group's producers, which outlive its id
    round_to: int
    auto: bool  # steps measured (``--round-to auto``), refined per group
    min_channels: int
    latency: LatencyModel | None
    base_ms: float | None  # predicted latency of the original
    step_choice: StepChoice | None = None  # how --round-to auto chose round_to

    def steps(self, analysis: GroupAnalysis) -> dict[int, int]:
        """Each group's width step: --round-to N as asked, or the measured step (auto), kept fine
        enough for narrow groups; from the group's original width, so it holds across rounds."""
        return {g.id: group_step(self._width(g), self.round_to) if self.auto else self.round_to
                for g in analysis.prunable}

    def floors(self, analysis: GroupAnalysis) -> dict[int, int]:
        """Each group's floor, from its width in the original model."""
        steps = self.steps(analysis)
        return {g.id: floor_for(self._width(g), self.min_channels, steps[g.id]) for g in analysis.prunable}

    def _width(self, group) -> int:
        return self.original_width.get(frozenset(group.producers), group.channels)

    def predicted_fraction(self, analysis: GroupAnalysis) -> float:
        """The model's predicted latency as a share of the original's (the run must have tables)."""
        tables, base_ms = self.timed()
        return tables.predict(analysis.cost, analysis.shapes) / base_ms

    def predicted_share(self, ms: float | None) -> float | None:
        """``ms`` as a share of the original's predicted latency (None without tables)."""
        return None if ms is None or self.base_ms is None else ms / self.base_ms

    def choose(self, model: onnx.ModelProto, analysis: GroupAnalysis, scores: dict[int, np.ndarray], goal: int,
               flops_weight: float, goal_ms: float | None = None, per_flop: bool | None = None,
               hardware_aware: bool = True) -> Selection:
        """The channels to keep so the model reaches ``goal`` FLOPs (and ``goal_ms``): ranked by
        ``scores`` against what each costs, on this plan's steps and floors (``select``);
        ``hardware_aware`` False ranks by FLOPs alone even where the plan has tables."""
        return select(model, analysis, scores, goal, self.floors(analysis), self.steps(analysis), flops_weight,
                      self.latency if hardware_aware else None, goal_ms, per_flop)

    def round_goal(self, options: PruneOptions, r: int, rounds: int) -> tuple[int, float | None]:
        """Round ``r`` of ``rounds``' goal: an equal share of the way to the FLOPs target (the
        last round the target itself), and of the way to the latency target where there is one
        (predicted milliseconds), else None."""
        share = r / rounds
        goal = int(self.base.flops * (1 - (1 - options.flops_share) * share)) if r < rounds else self.target_flops
        if options.target_latency is None:
            return goal, None
        return goal, self.timed()[1] * (1 - (1 - options.target_latency) * share)

    def next_budget_goal(self, analysis: GroupAnalysis, minimize: str) -> tuple[int, float | None]:
        """With --max-drop as the goal: the next round's, ``BUDGET_STEP`` of what is left, in
        FLOPs or (``minimize`` latency) in predicted milliseconds."""
        flops = analysis.cost.flops
        if minimize == "latency":
            return flops, self.timed()[0].predict(analysis.cost, analysis.shapes) * (1 - BUDGET_STEP)
        return int(flops * (1 - BUDGET_STEP)), None

    def timed(self) -> tuple[LatencyModel, float]:
        """The latency tables and the original's predicted milliseconds, where the run has them
        (hardware-aware widths, a latency target or goal)."""
        if self.latency is None or self.base_ms is None:
            raise RuntimeError("this run measured no latency tables")
        return self.latency, self.base_ms


def latency_store(run: Run) -> Store:
    """Measurements from --latency-table, or measured here (and cached)."""
    o = run.options
    return TableFile(o.latency_table) if o.latency_table else LocalCache(run.hardware.ort_device, run.hardware.threads)


def plan_widths(run: Run, analysis: GroupAnalysis) -> WidthPlan:
    """Measure (or read from --latency-table) the width step and latency tables when asked, and
    refuse targets the floors cannot reach. With --max-drop as the goal there is no target: the
    rounds go on while quality holds."""
    o = run.options
    base = analysis.cost
    latency, round_to, choice = None, o.round_to if isinstance(o.round_to, int) else 1, None
    target = o.flops_share
    if not analysis.prunable and target < 1:
        reasons = sorted({r for g in analysis.groups for r in g.blocked})[:3]
        raise OnnxpruneError(f"nothing in this model can be pruned ({'; '.join(reasons)})")
    if o.round_to == "auto" or o.target_latency is not None or o.minimize == "latency" or o.latency_table:
        store = latency_store(run)
        grid_step = round_to
        if o.round_to == "auto" or o.latency_table:
            log.info("width step and layer latency on %s%s", store.device,
                     f" from {o.latency_table}" if o.latency_table else " (measured here, cached)")
            grid_step = measure_granularity(store)
            round_to = grid_step if o.round_to == "auto" else round_to
        tick = lambda d, t: run.progress("measuring layer latency", d, t)  # noqa: E731
        if o.round_to == "auto" and analysis.prunable:
            latency, choice = choose_step(run.model.work.model, analysis, run.model.work.image, store, grid_step,
                                          _reference_target(o), o.min_channels, o.flops_weight, o.seed, tick)
            round_to = choice.step
        else:
            latency = measure_latency(run.model.work.model, analysis, run.model.work.image, store,
                                      granularity=grid_step,
                                      progress=tick)
    plan = WidthPlan(base, int(target * base.flops), {frozenset(g.producers): g.channels for g in analysis.groups},
                     round_to, o.round_to == "auto", o.min_channels, latency,
                     latency.predict(base, analysis.shapes) if latency else None, choice)
    if o.budget_goal:
        return plan
    floor_shapes = predict_shapes(analysis, plan.floors(analysis))
    best = count(run.model.original.model, floor_shapes)
    if best.flops > plan.target_flops:
        raise OnnxpruneError(
            f"the target of {100 * o.flops_share:g}% FLOPs cannot be reached: with every prunable group at its "
            f"floor the model keeps {best.flops / base.flops:.1%} ({analysis.prunable_flops_share():.0%} of "
            "its FLOPs are in prunable layers); raise --target-flops or lower --min-channels"
        )
    if o.target_latency is not None:
        tables, base_ms = plan.timed()
        if tables.predict(best, floor_shapes) > o.target_latency * base_ms:
            raise OnnxpruneError(
                f"the target of {100 * o.target_latency:g}% latency cannot be reached: with every prunable group at "
                f"its floor the model is predicted to take {tables.predict(best, floor_shapes) / base_ms:.0%} of its "
                f"{tables.original_ms:.2f} ms; raise --target-latency or lower --min-channels"
            )
    return plan


def _reference_target(o: PruneOptions) -> float:
    """The FLOPs share the width steps are compared at: the target, the latency target where
    that is stricter, or half the model where quality is the goal."""
    strictest = min(1.0 if o.target_flops is None else o.target_flops, o.target_latency or 1.0)
    return strictest if strictest < 1 else 0.5


def planned_rounds(o: PruneOptions) -> int:
    """--rounds, or enough that each removes at most ~10 % of the FLOPs (or latency); with the
    budget as the goal, the rounds down to 30 % (an estimate: quality decides)."""
    if o.budget_goal:
        return o.rounds or ceil(ln(0.3) / ln(1 - BUDGET_STEP))
    strictest = min(o.flops_share, 1.0 if o.target_latency is None else o.target_latency)
    return o.rounds or max(1, ceil((1 - strictest) / 0.1 - 1e-9))
