"""How far a figure measured on a few held-out items can be trusted: 95 % intervals.

A share of items (accuracy, agreement) gets Wilson's score interval, and the drop between two
models judged on the same items Newcombe's interval for paired proportions (his method 10, built
from the two Wilson intervals and the correlation of the pairs): where both models get every
item right it still says what a few dozen items cannot rule out, which a bootstrap (all
resamples alike) would hide. Other figures (mAP, mIoU, explained variance), and their drop, get
a seeded percentile bootstrap over the items, paired for the drop.

Where the items are several views of each held-out image (``clusters``: the image of each item),
views of one image are not independent: the bootstrap draws images, each with all its views, and
no interval is narrower than what that many images that all agree allow.
"""

from __future__ import annotations

from math import ceil, sqrt
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: tasks.py judges with these intervals' callers, not with them
    from .tasks import Measure

__all__ = ["wilson", "bootstrap", "interval", "paired_share_interval", "drop_interval", "agreement_floor",
           "items_to_resolve", "independent", "RESAMPLES"]

RESAMPLES = 400
Z95 = 1.959964


def wilson(share: float, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's 95 % score interval of a proportion ``share`` of ``n`` items."""
    if n <= 0:
        return 0.0, 1.0
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _resamples(n: int, seed: int, count: int = RESAMPLES, clusters: np.ndarray | None = None) -> list[np.ndarray]:
    """Item indices of ``count`` bootstrap resamples: of items, or of whole ``clusters``."""
    rng = np.random.default_rng(seed)
    if clusters is None:
        return [rng.integers(0, n, n) for _ in range(count)]
    members = [np.flatnonzero(clusters == c) for c in np.unique(clusters)]
    return [np.concatenate([members[j] for j in rng.integers(0, len(members), len(members))]) for _ in range(count)]


def independent(items: int, clusters: np.ndarray | None) -> int:
    """How many independent items a figure rests on: the images, where items are their views."""
    return items if clusters is None else len(np.unique(clusters))


def bootstrap(m: Measure, seed: int = 0, clusters: np.ndarray | None = None) -> tuple[float, float]:
    """95 % percentile interval of a measure over resampled items (or ``clusters`` of them)."""
    if independent(m.items, clusters) < 2:
        return 0.0, 1.0
    values = [m.value(idx) for idx in _resamples(m.items, seed, clusters=clusters)]
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def interval(m: Measure, seed: int = 0, clusters: np.ndarray | None = None) -> tuple[float, float]:
    """Wilson's for a share of independent items, the bootstrap's otherwise (no narrower than the
    ``agreement_floor`` of its independent items, within [0, 1])."""
    if m.hits is not None and clusters is None:
        return wilson(m.figure(), m.items)
    low, high = bootstrap(m, seed, clusters)
    floor = agreement_floor(independent(m.items, clusters)) / 100
    return max(0.0, min(low, m.figure() - floor)), min(1.0, max(high, m.figure() + floor))


def paired_share_interval(before: np.ndarray, after: np.ndarray, z: float = Z95) -> tuple[float, float]:
    """Newcombe's 95 % interval (method 10) of before's share minus after's over the same items."""
    n = len(before)
    both = int(((before > 0) & (after > 0)).sum())
    only_before = int(((before > 0) & (after <= 0)).sum())
    only_after = int(((before <= 0) & (after > 0)).sum())
    neither = n - both - only_before - only_after
    p1, p2 = (both + only_before) / n, (both + only_after) / n
    l1, u1 = wilson(p1, n, z)
    l2, u2 = wilson(p2, n, z)
    margins = (both + only_before) * (only_after + neither) * (both + only_after) * (only_before + neither)
    phi = (both * neither - only_before * only_after) / sqrt(margins) if margins else 0.0
    diff = p1 - p2
    low = diff - sqrt(max(0.0, (p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2))
    high = diff + sqrt(max(0.0, (u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2))
    return low, high


def drop_interval(before: Measure, after: Measure, seed: int = 0,
                  clusters: np.ndarray | None = None) -> tuple[float, float]:
    """95 % interval of the points lost (100 × (before − after)) on the same items: Newcombe's for
    shares of independent items, a paired bootstrap otherwise (of whole ``clusters`` where items
    are views of a few images) — never narrower than the interval of n independent items that all
    agree (``agreement_floor``): resamples of a few items that happen to be alike are all alike,
    and would show no doubt at all."""
    n = independent(after.items, clusters)
    if n < 2:
        return -100.0, 100.0
    if before.hits is not None and after.hits is not None and clusters is None:
        low, high = paired_share_interval(before.hits, after.hits)
        return 100 * low, 100 * high
    drops = [100 * (before.value(idx) - after.value(idx)) for idx in _resamples(after.items, seed, clusters=clusters)]
    points = 100 * (before.figure() - after.figure())
    floor = agreement_floor(n)
    return (max(-100.0, min(float(np.percentile(drops, 2.5)), points - floor)),  # figures are in [0, 1]
            min(100.0, max(float(np.percentile(drops, 97.5)), points + floor)))


def agreement_floor(items: int) -> float:
    """Half the width, in points, of Newcombe's interval for ``items`` items on which two models
    agree every time: what so many items cannot rule out (12 items: 24 points; 500: 0.8)."""
    _low, high = paired_share_interval(np.ones(items), np.ones(items))
    return 100 * high


def items_to_resolve(width: float, items: int, budget: float) -> int:
    """About how many items would narrow an interval ``width`` points wide on ``items`` to the
    budget: widths shrink as one over the square root of the count."""
    if budget <= 0 or width <= budget:
        return items
    return int(ceil(items * (width / budget) ** 2))
