"""The width step channel counts are kept on (``--round-to auto``), chosen by timing whole models.

The per-layer probe (``latency.measure_granularity``) says where one conv's kernels lose their
alignment, not what a whole model gains: on ResNet-18 the probe's 8 lost to a fixed 16 (speed-up
÷ MAC reduction 0.85 against 0.89). So each candidate step — the probe's, and those of 8, 16 and
32 no finer than it — prunes the model once to the run's FLOPs target with the selector the
rounds use (the filters' L1 norms standing in for saliency, which is not known yet), and the
pruned models are timed side by side with the original on this device, five times round-robin.
The candidate with the best efficiency (speed-up ÷ FLOPs reduction, so a step that lands a little
lower on FLOPs gains nothing by it) wins, unless a coarser step ties with it: a finer step must be
the more efficient in every one of the repeats, each a side-by-side timing, and by more than
``NOISE_FLOOR`` at the median. A machine that slows for one repeat slows all its models alike, so
the comparison within a repeat is what the timings can tell; the spread of raw timings across
repeats is not (on a busy machine it put ResNet-50's noise at 16 %, and the coarser step 32 won
over a 16 that was faster in all three repeats, by 1.5 to 3.1 %). The timings also calibrate the
latency tables, and are cached like them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx

from ..criteria import get
from ..criteria.stats import score_groups
from ..graph.flops import count
from ..graph.groups import GroupAnalysis, predict_shapes
from ..graph.image_input import ImageInput
from ..measure.latency import LatencyModel, Store, measure_latency, measure_with_trials, scaled_width
from .select import channel_costs, floor_for, group_step, select

__all__ = ["CANDIDATE_STEPS", "StepCandidate", "StepChoice", "choose_step"]

log = logging.getLogger(__name__)

CANDIDATE_STEPS = (8, 16, 32)  # with the probe's step
NOISE_FLOOR = 0.01  # and a finer step must beat a coarser one by more than this share at the median
_REPEATS = 5  # all five won by the finer step: 1 chance in 32 where the two are alike


@dataclass(frozen=True)
class StepCandidate:
    step: int
    flops_fraction: float  # of the original, where the trial selection landed
    predicted_ms: float
    measured_ms: float | None  # None where the device is not this one (--latency-table)
    efficiency: float  # speed-up ÷ FLOPs reduction, measured (else predicted): the median of ``per_repeat``
    per_repeat: tuple[float, ...] = ()  # the efficiency in each side-by-side repeat (none where predicted)


@dataclass(frozen=True)
class StepChoice:
    step: int
    candidates: tuple[StepCandidate, ...]
    reason: str


def _usable(step: int, analysis: GroupAnalysis) -> bool:
    """A step no wider than half of the groups that hold most of the prunable FLOPs: wider, and
    the groups it would leave whole (or able to lose one step only) decide everything."""
    total = sum(g.flops_per_channel * g.channels for g in analysis.prunable)
    wide = sum(g.flops_per_channel * g.channels for g in analysis.prunable if g.channels >= 2 * step)
    return total > 0 and wide >= 0.5 * total


def _reaches(step: int, goal: int, model: onnx.ModelProto, analysis: GroupAnalysis, min_channels: int) -> bool:
    """Whether the target can be reached on this step at all: on a small model a coarse step's
    floors (a 32-channel group whole at step 32) may keep more FLOPs than the target allows."""
    _, floors = _grid(analysis, step, min_channels)
    return count(model, predict_shapes(analysis, floors)).flops <= goal


def _grid(analysis: GroupAnalysis, step: int, min_channels: int) -> tuple[dict[int, int], dict[int, int]]:
    """Each group's width step and floor when the model's step is ``step`` (as the rounds set them)."""
    steps = {g.id: group_step(g.channels, step) for g in analysis.prunable}
    return steps, {g.id: floor_for(g.channels, min_channels, steps[g.id]) for g in analysis.prunable}


def choose_step(model: onnx.ModelProto, analysis: GroupAnalysis, image: ImageInput, store: Store, probe_step: int,
                target_fraction: float, min_channels: int, flops_weight: float, seed: int,
                progress: Callable[[int, int], None] | None = None) -> tuple[LatencyModel, StepChoice]:
    """The latency tables (on the probe's grid) and the width step for this model at this FLOPs
    target on ``store``'s device. The candidates' timings calibrate the tables too, so choosing
    costs no more whole-model timings than calibrating did."""
    # finer than the probe's step is ruled out by the probe itself (such widths lost most of their
    # saving on this device's kernels); the probe can only err towards too fine a step, which the
    # whole-model timings then rule out (ResNet-18: the probe said 8, whose models were slowest)
    steps = sorted({probe_step, *(s for s in CANDIDATE_STEPS if s >= probe_step)})
    goal = int(target_fraction * analysis.cost.flops)
    usable = [s for s in steps if _usable(s, analysis) and _reaches(s, goal, model, analysis, min_channels)]
    usable = usable or [min(steps)]
    scores = score_groups(get("l1"), model, analysis, None, seed)
    trials: list[tuple[int, float, float]] = []  # (step, FLOPs fraction, layers' sum)

    def trial_widths(raw: LatencyModel) -> list[dict[int, int]]:
        # what a channel saves, measured over one probe step for every candidate: a trial's
        # ranking need not be exact, and each costs a prediction per group
        costs = channel_costs(model, analysis, raw, {g.id: group_step(g.channels, probe_step)
                                                       for g in analysis.prunable}, per_flop=True)
        chosen = []
        for step in usable:
            per_group, floors = _grid(analysis, step, min_channels)
            selection = select(model, analysis, scores, goal, floors, per_group, flops_weight, raw,
                               cost_per_channel=costs)
            widths = {gid: len(kept) for gid, kept in selection.keep.items()}
            shapes = predict_shapes(analysis, widths)
            trials.append((step, selection.flops / analysis.cost.flops, raw.predict(count(model, shapes), shapes)))
            chosen.append(widths)
        # and, for the calibration only, every group at half its width (a quarter of the FLOPs or
        # so): the line the rounds predict with must reach below the target, where a latency
        # target or a quality budget may take them
        return chosen + [{g.id: scaled_width(g.channels, 0.5, probe_step) for g in analysis.prunable}]

    latency, runs = measure_with_trials(model, analysis, image, store, probe_step, trial_widths, _REPEATS, progress)
    if runs is None:  # another device's tables (--latency-table): calibrated as that device profiled the model
        latency = measure_latency(model, analysis, image, store, probe_step)
    base_raw = latency.predict(analysis.cost, analysis.shapes)
    # the layers' sums calibrated, as the rounds will predict them
    predicted = [(step, fraction, latency.rest_ms + latency.scale * total) for step, fraction, total in trials]
    return latency, _decide(_candidates(predicted, base_raw, runs), probe_step)


def _candidates(trials: list[tuple[int, float, float]], base_ms: float, measured: list[list[float]] | None
                ) -> tuple[StepCandidate, ...]:
    """Each (step, FLOPs fraction, predicted ms) with its timings: the efficiency within each
    repeat (the original's time in that repeat over the candidate's), and their median."""
    # (repeats, original + candidates + the half-width calibration model): the last is not a candidate
    runs = np.asarray(measured, dtype=np.float64) if measured else None
    out = []
    for k, (step, fraction, predicted) in enumerate(trials):
        if runs is None:
            out.append(StepCandidate(step, fraction, predicted, None, base_ms / predicted * fraction))
            continue
        per_repeat = runs[:, 0] / runs[:, k + 1] * fraction
        out.append(StepCandidate(step, fraction, predicted, float(np.median(runs[:, k + 1])),
                                 float(np.median(per_repeat)), tuple(float(e) for e in per_repeat)))
    return tuple(out)


def _beats(finer: StepCandidate, coarser: StepCandidate) -> bool:
    """Whether ``finer`` is the more efficient beyond doubt: in every repeat (each a side-by-side
    timing of both) and by more than ``NOISE_FLOOR`` at the median; by the margin alone where the
    efficiencies are predicted."""
    margin = finer.efficiency > coarser.efficiency * (1 + NOISE_FLOOR)
    if not finer.per_repeat or len(finer.per_repeat) != len(coarser.per_repeat):
        return margin
    return margin and all(f > c for f, c in zip(finer.per_repeat, coarser.per_repeat))


def _decide(candidates: tuple[StepCandidate, ...], probe_step: int) -> StepChoice:
    best = max(candidates, key=lambda c: c.efficiency)
    chosen = max((c for c in candidates if c is best or (c.step > best.step and not _beats(best, c))),
                 key=lambda c: c.step)
    by = "measured" if best.measured_ms is not None else "predicted"
    if chosen is best:
        reason = f"best {by} efficiency"
        if best.per_repeat and any(c.step > best.step for c in candidates):
            reason += ", ahead of each coarser step in every repeat"
    else:
        reason = (f"ties with step {best.step}'s {by} efficiency ({chosen.efficiency:.2f} against "
                  f"{best.efficiency:.2f}{', not lower in every repeat' if best.per_repeat else ''}): "
                  "the coarser step wins")
    table = ", ".join(f"{c.step}: {c.efficiency:.2f}" for c in candidates)
    log.info("width step %d (%s; %s efficiency by step: %s; the per-layer probe said %d)", chosen.step, reason, by,
             table, probe_step)
    return StepChoice(chosen.step, candidates, reason)
