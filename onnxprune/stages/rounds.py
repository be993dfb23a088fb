"""The rounds: {score → choose → slice → fine-tune} until the target. What each round aims at
and which channels it keeps, the planner says (``planner.WidthPlan``); each round is judged by
``run.judge`` (``judging.Judge``); the rounds a latency target adds when the device disagrees with
the prediction are ``latency_correction``'s.

Each stage takes the run's frozen context (``context.Run``) and the ``WidthPlan`` and returns
new values; nothing is rebound behind the caller's back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import onnx

from ..criteria import get
from ..errors import OnnxpruneError
from ..graph.groups import GroupAnalysis
from ..graph.reconstruct import cut_consumers, reconstruct
from ..graph.slice import slice_groups, zero_channels
from ..report import RoundRecord
from ..torchview.view import TorchView
from .bandit import ChannelBandit
from .context import Run
from .passes import Pass, PassState, Steps
from .planner import WidthPlan, planned_rounds

__all__ = ["ROUNDS", "prune_round", "prune_in_rounds", "RoundsHopeless", "hopeless"]

log = logging.getLogger(__name__)


def prune_round(run: Run, plan: WidthPlan, view: TorchView, analysis: GroupAnalysis, r: int, label: str, goal: int,
                goal_ms: float | None, soft: bool, per_flop: bool | None = None) -> tuple[TorchView, RoundRecord, bool]:
    """Score, choose, slice (or zero, ``soft``) and fine-tune: one round (``analysis`` is the
    view's groups). Returns the new view, the round's record and whether the goal was reached."""
    o, tick = run.options, run.progress
    tick(f"{label}: scoring", 0, 1)
    scores = view.scores(analysis, get(o.criterion), run.data.calibration, run.training.settings.at_once,
                         run.data.calibration_targets, o.seed + r)
    tick(f"{label}: scoring", 1, 1)
    chosen = plan.choose(view.model, analysis, scores, goal, o.flops_weight, goal_ms, per_flop)
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
    quality = run.judge.quality(view.model, judging=True)
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


def hopeless(run: Run, view: TorchView, records: list[RoundRecord]) -> str | None:
    """Why the rounds should stop now, or None: the last round lost more than four times
    --max-drop and 20 points beyond it, and even its 95 % interval's best case is twice the budget
    — so far outside that the rest of the schedule will not bring it back (a table detector lost 72
    points in its first round and went on for 27 minutes). Names the smallest FLOPs share that held."""
    o, last = run.options, records[-1]
    if last.quality_drop is None or last.quality_drop <= max(4 * o.drop_limit, o.drop_limit + 20):
        return None
    low = run.judge.quality(view.model, intervals=True, judging=True).drop.low
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
        goal, goal_ms = plan.round_goal(o, r, rounds)
        if analysis.cost.flops <= goal and (goal_ms is None or
                                            plan.timed()[0].predict(analysis.cost, analysis.shapes) <= goal_ms):
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


def _rounds_pass(run: Run, plan: WidthPlan, state: PassState, steps: Steps) -> PassState:
    assert state.view is not None  # (required)
    try:
        view, records, reached = prune_in_rounds(run, plan, state.view, list(state.records), steps.after,
                                                 steps.each_round(state))
    except RoundsHopeless as stop:  # judged and reported as it stands, without the final fine-tuning
        return replace(state, view=stop.view, records=tuple(stop.records), stopped=stop.message)
    return replace(state, view=view, records=tuple(records), reached=reached)


def _to_a_target(run: Run, state: PassState) -> bool:
    return not run.options.budget_goal and state.reached


ROUNDS = Pass("rounds", _rounds_pass, requires=("view",), ensures=("view",), applies=_to_a_target)
