"""The rounds: what widths are possible, then {score → select → slice → fine-tune} until the
target. Each round is judged by ``judging.held_out_quality``; the rounds a latency target adds
when the device disagrees with the prediction are ``latency_correction``'s.

Each stage takes the run's frozen context (``context.Run``) and the ``WidthPlan`` and returns
new values; nothing is rebound behind the caller's back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from math import ceil, log as ln
from typing import Any

import numpy as np
import onnx

from ..criteria import get
from ..errors import OnnxpruneError
from ..graph.flops import ModelCost, count
from ..graph.groups import GroupAnalysis, predict_shapes
from ..graph.reconstruct import cut_consumers, reconstruct
from ..graph.slice import slice_groups, zero_channels
from ..measure.device_table import TableFile
from ..measure.latency import LatencyModel, LocalCache, Store, measure_granularity, measure_latency
from ..options import PruneOptions
from ..report import RoundRecord
from ..torchview.view import TorchView
from .bandit import ChannelBandit
from .context import Run
from .judging import held_out_quality
from .select import floor_for, group_step, select
from .width_step import StepChoice, choose_step

__all__ = ["WidthPlan", "plan_widths", "prune_round", "prune_in_rounds", "RoundsHopeless", "hopeless",
           "planned_rounds", "latency_store", "BUDGET_STEP"]

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


def prune_round(run: Run, plan: WidthPlan, view: TorchView, analysis: GroupAnalysis, r: int, label: str, goal: int,
                goal_ms: float | None, soft: bool, per_flop: bool | None = None) -> tuple[TorchView, RoundRecord, bool]:
    """Score, choose, slice (or zero, ``soft``) and fine-tune: one round (``analysis`` is the
    view's groups). Returns the new view, the round's record and whether the goal was reached."""
    o, tick = run.options, run.progress
    tick(f"{label}: scoring", 0, 1)
    scores = view.scores(analysis, get(o.criterion), run.data.calibration, run.training.settings.at_once,
                         run.data.calibration_targets, o.seed + r)
    tick(f"{label}: scoring", 1, 1)
    chosen = select(view.model, analysis, scores, goal, plan.floors(analysis), plan.steps(analysis),
                    o.flops_weight, plan.latency, goal_ms, per_flop)
    steps, batch = run.training.round_steps, run.training.settings.batch_size
    progress = lambda images: tick(f"{label}: fine-tuning", images, steps * batch)  # noqa: E731
    if o.schedule == "cucb":
        view, losses = _bandit_round(run, view, analysis, {gid: len(k) for gid, k in chosen.keep.items()}, r,
                                     progress)
    else:
        if soft:  # zeroed, not removed: the groups stay as they are
            view = TorchView.of(zero_channels(view.model, analysis, chosen.keep), view.image, analysis=analysis)
        else:
            sliced, groups = slice_groups(view.model, view.image, analysis, chosen.keep)
            if o.reconstruct:
                sliced = reconstructed(run, view.model, sliced, analysis, chosen.keep, label)
            view = TorchView.of(sliced, view.image, analysis=groups)
        losses = view.finetune(run.data.train, run.teacher, steps, run.training.settings, (o.seed, r), progress)
    quality = held_out_quality(run, view.model, judging=True)
    drop = quality.drop
    record = RoundRecord(
        r, chosen.flops, chosen.params, chosen.flops / plan.base.flops,
        float(np.mean(losses[-5:])) if losses else None, quality.after.get("top1_agreement"),
        plan.predicted_share(chosen.latency_ms), drop.points,
    )
    log.info("%s: %.1f%% of FLOPs left, %s %.2f%% (%+.1f points)%s", label, 100 * record.flops_fraction,
             drop.metric.replace("_", " "), 100 * quality.after[drop.metric], -drop.points,
             f", fine-tune loss {record.loss:.4f}" if losses else "")
    return view, record, chosen.reached


def reconstructed(run: Run, before: onnx.ModelProto, sliced: onnx.ModelProto, analysis: GroupAnalysis,
                  keep: dict[int, np.ndarray], label: str) -> onnx.ModelProto:
    """``sliced`` with the layers that read removed channels refitted by least squares so that
    their outputs stay what they were in ``before`` (``graph/reconstruct.py``)."""
    consumers = cut_consumers(before, analysis, keep)
    if not consumers:
        return sliced
    tick = lambda done, total: run.progress(f"{label}: reconstructing", done, total)  # noqa: E731
    refitted, refits = reconstruct(before, sliced, consumers, run.model.work.image.name, run.data.calibration,
                                   run.options.seed,
                                   analysis.cost.macs, progress=tick)
    kept = [r.error_share for r in refits if r.kept]
    log.info("%s: refitted %d of %d layers that read removed channels (on calibration images the fit did not see, "
             "they miss %.0f%% of what the plain cut missed: median)", label, len(kept), len(consumers),
             100 * float(np.median(kept)) if kept else 100.0)
    return refitted


def _bandit_round(run: Run, view: TorchView, analysis: GroupAnalysis, widths: dict[int, int], r: int,
                  progress) -> tuple[TorchView, list[float]]:
    """``--schedule cucb``: the round's fine-tuning steps, each running the channels a bandit
    picks (``bandit.py``) at the widths the selector chose; the channels that earned most are kept."""
    if run.hardware.ranks.world > 1:
        raise OnnxpruneError("--schedule cucb learns from each step's loss in one process; run it without torchrun")
    bandit = ChannelBandit(view.imported.module, view.model, analysis, view.imported.module_of, widths,
                           (run.options.seed, r))
    try:
        losses = view.finetune(run.data.train, run.teacher, run.training.round_steps, run.training.settings,
                               (run.options.seed, r),
                               progress, after_step=bandit)
    finally:
        bandit.close()
    sliced, groups = slice_groups(view.model, view.image, analysis, bandit.keep())
    return TorchView.of(sliced, view.image, analysis=groups), losses


class RoundsHopeless(Exception):
    """A round lost so far beyond --max-drop that recovery cannot bring it back: the rounds stop
    (``view``, ``records`` as they are), and the run says what the user can ask for instead."""

    def __init__(self, view: TorchView, records: list[RoundRecord], message: str) -> None:
        super().__init__(message)
        self.view, self.records, self.message = view, records, message
        self.freed: Any = None  # the lossless pass's result (LosslessResult), set by the pipeline on the way out
        self.blocks: dict | None = None  # what --structure removed whole, likewise


def hopeless(run: Run, view: TorchView, records: list[RoundRecord]) -> str | None:
    """Why the rounds should stop now, or None: the last round lost more than four times
    --max-drop and 20 points beyond it, and even its 95 % interval's best case is twice the budget
    — so far outside that the rest of the schedule will not bring it back (a table detector lost 72
    points in its first round and went on for 27 minutes). Names the smallest FLOPs share that held."""
    o, last = run.options, records[-1]
    if last.quality_drop is None or last.quality_drop <= max(4 * o.drop_limit, o.drop_limit + 20):
        return None
    low = held_out_quality(run, view.model, intervals=True, judging=True).drop.low
    if low is None or low <= 2 * o.drop_limit:
        return None
    held = [r for r in records if r.quality_drop is not None and r.quality_drop <= o.drop_limit]
    asked = f"--target-flops {held[-1].flops_fraction:.2f}" if held else None
    return (f"round {last.round} at {last.flops_fraction:.1%} of the FLOPs lost {last.quality_drop:.1f} points "
            f"(95 % interval from {low:+.1f}), far beyond --max-drop {o.drop_limit:g}; stopped there instead of "
            "fine-tuning on — " + (f"the smallest share that held was {held[-1].flops_fraction:.1%} (round "
                                   f"{held[-1].round}): ask for {asked}, or allow more with --max-drop"
                                   if held else "no round held: prune less (a higher --target-flops), give more "
                                   "images, or allow more with --max-drop"))


def planned_rounds(o: PruneOptions) -> int:
    """--rounds, or enough that each removes at most ~10 % of the FLOPs (or latency); with the
    budget as the goal, the rounds down to 30 % (an estimate: quality decides)."""
    if o.budget_goal:
        return o.rounds or ceil(ln(0.3) / ln(1 - BUDGET_STEP))
    strictest = min(o.flops_share, 1.0 if o.target_latency is None else o.target_latency)
    return o.rounds or max(1, ceil((1 - strictest) / 0.1 - 1e-9))


def prune_in_rounds(run: Run, plan: WidthPlan, view: TorchView, records: list[RoundRecord] | None = None,
                    after: int = 0, saved: Callable[[int, str, TorchView, list[RoundRecord], bool], None] | None = None
                    ) -> tuple[TorchView, list[RoundRecord], bool]:
    """Rounds that each take an equal share of the way to the target (rounds already below
    their goal are skipped, and those up to ``after`` were done by a resumed run); returns the
    view, the records and whether the target was reached. ``saved`` is called after each round."""
    o = run.options
    rounds = planned_rounds(o)
    records = list(records or [])
    for r in range(after + 1, rounds + 1):
        analysis = view.groups()
        share = r / rounds
        goal = int(plan.base.flops * (1 - (1 - o.flops_share) * share)) if r < rounds else plan.target_flops
        goal_ms = None
        if o.target_latency is not None:
            tables, base_ms = plan.timed()
            goal_ms = base_ms * (1 - (1 - o.target_latency) * share)
            if analysis.cost.flops <= goal and tables.predict(analysis.cost, analysis.shapes) <= goal_ms:
                continue
        elif analysis.cost.flops <= goal:
            continue
        label = f"round {r}/{rounds}"
        view, record, reached = prune_round(run, plan, view, analysis, r, label, goal, goal_ms,
                                            soft=o.schedule == "sfp" and r < rounds)
        records.append(record)
        if saved:
            saved(r, label, view, records, reached)
        stop = hopeless(run, view, records)
        if stop:
            log.warning(stop)
            raise RoundsHopeless(view, records, stop)
        if not reached:
            return view, records, False
    return view, records, True
