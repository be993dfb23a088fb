"""Choose the channels to drop: a global ranking of normalized scores, weighed by what they cost.

Channels (or, with ``round_to``, blocks of channels that keep widths multiples of N) are ranked
by score − λ · (cost of one channel / the most any channel costs), Molchanov et al.'s FLOPs
regularization. The cost is FLOPs. With a latency model and a FLOPs target, each group's FLOPs
are weighted by how slow they are on this device: the milliseconds a channel's removal saves per
FLOP, against the model's median, bounded to a factor of ``SLOWNESS_BOUND`` either way. So the
FLOPs that must go are taken where they are slowest, in memory-bound layers, but a layer whose
channels hold few FLOPs cannot go first merely for being slow per FLOP: ranked by the unbounded
milliseconds per FLOP, the compact character MobileNet lost its late layers to their floors and
kept 39.0 % accuracy at 30 % of the FLOPs, against 69.4 % bounded (``benchmarks/compact.py``;
``results/compact-2026-12-02-unbounded.txt``). Under a latency target alone the cost is the
milliseconds themselves. (Ranking by absolute milliseconds under a FLOPs target pinned
ResNet-18's residual streams at their floor and kept its late layers, cheap per FLOP, nearly
whole.) The lowest go first, in score order within each group, until the exact predicted FLOPs
(and the predicted latency, with a latency target) reach the target; a binary search over that
ranking makes it exact. Then the last-ranked removals that still fit are given back, since coarse steps (16 of a
32-channel layer) can land the ranked prefix far below the target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from math import ceil

import numpy as np
import onnx

from ..graph.flops import count
from ..graph.groups import GroupAnalysis, predict_shapes
from ..measure.latency import LatencyModel

__all__ = ["Selection", "select", "channel_costs", "floor_for", "group_step", "round_up", "SLOWNESS_BOUND"]

SLOWNESS_BOUND = 2.0  # how far a group's time per FLOP may move its FLOPs' cost, either way


@dataclass(frozen=True)
class Selection:
    keep: dict[int, np.ndarray]  # group id -> sorted channel indices to keep
    flops: int  # exact FLOPs of the model sliced to ``keep``
    params: int
    reached: bool  # False when every allowed removal still leaves more than the target
    latency_ms: float | None = None  # predicted, when a latency model was given


def round_up(width: int, channels: int, round_to: int) -> int:
    """The smallest multiple of ``round_to`` ≥ width, at most ``channels`` (groups narrower
    than round_to stay as they are)."""
    if round_to <= 1 or channels < round_to:
        return width
    return min(channels, ceil(width / round_to) * round_to)


def floor_for(original_channels: int, min_channels: int, round_to: int) -> int:
    """The fewest channels a group may keep: ≥ min_channels, ≥ 10 % of its original width."""
    return round_up(max(1, min_channels, ceil(0.1 * original_channels)), original_channels, round_to)


def group_step(channels: int, step: int) -> int:
    """The measured width step, halved only for groups narrower than one step of it.

    Finer steps for every narrow group (say, 4 for 24 channels) land nearer a FLOPs target but
    make misaligned widths: measured on MobileNetV2 at 224×224 that took its speed-up from 2.1×
    to 1.8× at the same FLOPs. So 24- and 32-channel groups keep steps of 16 (a 16-channel group
    stays whole); coarse landings are mended by the selector's fill-back.
    """
    while step > 1 and channels < step:
        step //= 2
    return step


def _widths_down(channels: int, floor: int, round_to: int) -> list[int]:
    """The widths a group may step down through, largest first (excluding its current one)."""
    if round_to <= 1:
        return list(range(channels - 1, floor - 1, -1))
    if channels < round_to:
        return []
    first = (channels - 1) // round_to * round_to
    return list(range(first, floor - 1, -round_to))


def select(
    model: onnx.ModelProto,
    analysis: GroupAnalysis,
    scores: dict[int, np.ndarray],
    target_flops: int,
    floors: dict[int, int],
    round_to: int | Mapping[int, int] = 1,
    flops_weight: float = 0.1,
    latency: LatencyModel | None = None,
    target_latency_ms: float | None = None,
    per_flop: bool | None = None,
    cost_per_channel: Mapping[int, float] | None = None,
) -> Selection:
    """Keep-sets that bring the model to at most ``target_flops`` (as close as granularity allows)
    and, with ``target_latency_ms``, to at most that predicted latency. ``per_flop`` ranks by the
    FLOPs weighted by their slowness even under a latency goal (default: only without one).
    ``cost_per_channel`` (``channel_costs``) where the caller has it: it takes a prediction per group."""
    if target_latency_ms is not None and latency is None:
        raise ValueError("a latency target needs the latency tables")
    steps = {g.id: round_to.get(g.id, 1) if isinstance(round_to, Mapping) else round_to for g in analysis.prunable}
    per_flop = target_latency_ms is None if per_flop is None else per_flop
    per_channel = cost_per_channel or channel_costs(model, analysis, latency, steps, per_flop=per_flop)
    # the scale: groups that may still lose channels (one at its floor must not set it)
    movable = [per_channel[g.id] for g in analysis.prunable if _widths_down(g.channels, floors.get(g.id, 1), steps[g.id])]
    max_cost = max(movable, default=1.0) or 1.0
    units = []  # (key, step, group id, width after this step, width before it)
    orders: dict[int, np.ndarray] = {}
    for group in analysis.prunable:
        gid = group.id
        if gid not in scores:
            continue
        order = np.argsort(scores[gid], kind="stable")
        orders[gid] = order
        penalty = flops_weight * per_channel[gid] / max_cost
        previous = group.channels
        for step, width in enumerate(_widths_down(group.channels, floors.get(gid, 1), steps[gid])):
            dropped = order[group.channels - previous : group.channels - width]
            key = float(np.mean(scores[gid][dropped])) - penalty
            units.append((key, step, gid, width, previous))
            previous = width
    units.sort(key=lambda u: (u[0], u[1]))

    def widths_after(k: int) -> dict[int, int]:
        widths: dict[int, int] = {}
        for _, _, gid, width, _ in units[:k]:
            widths[gid] = min(widths.get(gid, width), width)
        return widths

    def evaluate(widths: dict[int, int]):
        shapes = predict_shapes(analysis, widths)
        return count(model, shapes), shapes

    def cost(k: int):
        return evaluate(widths_after(k))

    def within(evaluated) -> bool:
        c, shapes = evaluated
        if c.flops > target_flops:
            return False
        return target_latency_ms is None or latency is None or latency.predict(c, shapes) <= target_latency_ms

    lo, hi = 0, len(units)
    if not within(cost(hi)):
        lo = hi
    while lo < hi:  # smallest k whose exact cost is within the target
        mid = (lo + hi) // 2
        if within(cost(mid)):
            hi = mid
        else:
            lo = mid + 1
    widths = widths_after(lo)
    if within(cost(lo)):
        widths = _fill_back(units[:lo], widths, analysis, lambda w: within(evaluate(w)))
    final, shapes = evaluated = evaluate(widths)
    keep = {
        gid: np.sort(orders[gid][analysis.group(gid).channels - width :])
        for gid, width in widths.items()
    }
    return Selection(keep, final.flops, final.params, within(evaluated),
                     latency.predict(final, shapes) if latency else None)


def _fill_back(applied: list, widths: dict[int, int], analysis: GroupAnalysis, fits, limit: int = 256) -> dict[int, int]:
    """Give back the last-ranked removals that still fit: with coarse steps (16 channels of a
    32-channel layer) the ranked prefix can land far below the target."""
    widths = dict(widths)
    for _, _, gid, width, previous in reversed(applied[-limit:]):
        if widths.get(gid) != width:
            continue  # a later step of this group is still applied
        trial = dict(widths)
        if previous >= analysis.group(gid).channels:
            del trial[gid]
        else:
            trial[gid] = previous
        if fits(trial):
            widths = trial
    return widths


def channel_costs(model: onnx.ModelProto, analysis: GroupAnalysis, latency: LatencyModel | None,
                      steps: dict[int, int], per_flop: bool) -> dict[int, float]:
    """What one channel of each prunable group costs: FLOPs; with a latency model, the predicted
    milliseconds its removal saves, or (``per_flop``) its FLOPs weighted by the milliseconds they
    save per FLOP against the model's median, within ``SLOWNESS_BOUND`` either way."""
    flops = {g.id: float(g.flops_per_channel) for g in analysis.prunable}
    if latency is None:
        return flops
    now = latency.predict(analysis.cost, analysis.shapes)
    saved = {}
    for g in analysis.prunable:
        step = min(max(steps[g.id], 1), g.channels - 1)
        if step < 1:
            saved[g.id] = 0.0
            continue
        shapes = predict_shapes(analysis, {g.id: g.channels - step})
        saved[g.id] = max(0.0, now - latency.predict(count(model, shapes), shapes)) / step
    if not per_flop:
        return saved
    per = {gid: saved[gid] / max(flops[gid], 1.0) for gid in saved}
    median = float(np.median([v for v in per.values() if v > 0] or [1.0])) or 1.0
    return {gid: flops[gid] * min(SLOWNESS_BOUND, max(1 / SLOWNESS_BOUND, per[gid] / median)) for gid in per}
