"""Choose the channels to drop: a global ranking of normalized scores, weighed by FLOPs saved.

Channels (or, with ``round_to``, blocks of channels that keep widths multiples of N) are ranked
by score − λ · (FLOPs one channel costs / the most any channel costs), Molchanov et al.'s FLOPs
regularization. The lowest go first, in score order within each group, until the exact
predicted FLOPs reach the target; a binary search over that ranking makes it exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

import numpy as np
import onnx

from .groups import GroupAnalysis, predict_cost

__all__ = ["Selection", "select", "floor_for"]


@dataclass(frozen=True)
class Selection:
    keep: dict[int, np.ndarray]  # group id -> sorted channel indices to keep
    flops: int  # exact FLOPs of the model sliced to ``keep``
    params: int
    reached: bool  # False when every allowed removal still leaves more than the target


def floor_for(original_channels: int, min_channels: int, round_to: int) -> int:
    """The fewest channels a group may keep: ≥ min_channels, ≥ 10 % of its original width."""
    floor = max(1, min_channels, ceil(0.1 * original_channels))
    if round_to > 1 and original_channels >= round_to:
        floor = max(round_to, ceil(floor / round_to) * round_to)
    return floor


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
    round_to: int = 1,
    flops_weight: float = 0.1,
) -> Selection:
    """Keep-sets that bring the model to at most ``target_flops`` (as close as granularity allows)."""
    max_fpc = max((g.flops_per_channel for g in analysis.prunable), default=1) or 1
    units = []  # (key, group id, width after this step)
    orders: dict[int, np.ndarray] = {}
    for group in analysis.prunable:
        gid = group.id
        if gid not in scores:
            continue
        order = np.argsort(scores[gid], kind="stable")
        orders[gid] = order
        penalty = flops_weight * group.flops_per_channel / max_fpc
        previous = group.channels
        for step, width in enumerate(_widths_down(group.channels, floors.get(gid, 1), round_to)):
            dropped = order[group.channels - previous : group.channels - width]
            key = float(np.mean(scores[gid][dropped])) - penalty
            units.append((key, step, gid, width))
            previous = width
    units.sort(key=lambda u: (u[0], u[1]))

    def widths_after(k: int) -> dict[int, int]:
        widths: dict[int, int] = {}
        for _, _, gid, width in units[:k]:
            widths[gid] = min(widths.get(gid, width), width)
        return widths

    def cost(k: int):
        return predict_cost(model, analysis, widths_after(k))

    lo, hi = 0, len(units)
    if cost(hi).flops > target_flops:
        lo = hi
    while lo < hi:  # smallest k whose exact cost is within the target
        mid = (lo + hi) // 2
        if cost(mid).flops <= target_flops:
            hi = mid
        else:
            lo = mid + 1
    widths = widths_after(lo)
    final = cost(lo)
    keep = {
        gid: np.sort(orders[gid][analysis.group(gid).channels - width :])
        for gid, width in widths.items()
    }
    return Selection(keep, final.flops, final.params, final.flops <= target_flops)
