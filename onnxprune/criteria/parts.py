"""The pieces data criteria are made of: signals and per-batch reductions, one small function each.

A signal sees a consumer's input (``a``) and its gradient (``g``), both (batch, channels,
positions); a reduction turns one batch of a signal into one value per channel. They only call
tensor methods, so this module imports no torch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "activation", "gradient", "taylor_product", "abs_of_mean", "mean_of_abs", "mean_of_squares_per_sample",
    "half_mean_of_squared_sums", "nonzero_fraction", "extremes", "l2_normalized", "kmeans",
]

Tensor = Any


def activation(a: Tensor, g: Tensor | None) -> Tensor:
    return a


def gradient(a: Tensor, g: Tensor | None) -> Tensor:
    return g


def taylor_product(a: Tensor, g: Tensor | None) -> Tensor:
    """activation × gradient: the first-order change of the loss when the channel is zeroed."""
    return a * g


def abs_of_mean(s: Tensor) -> Tensor:
    """|mean over batch and positions| (Molchanov et al. 2017)."""
    return s.mean(dim=(0, 2)).abs()


def mean_of_abs(s: Tensor) -> Tensor:
    return s.abs().mean(dim=(0, 2))


def mean_of_squares_per_sample(s: Tensor) -> Tensor:
    """mean over samples of (mean over positions)² (Molchanov et al. 2019, per-sample squared)."""
    return s.mean(dim=2).pow(2).mean(dim=0)


def half_mean_of_squared_sums(s: Tensor) -> Tensor:
    """½ · mean over samples of (Σ over positions)² (Theis et al. 2018, Fisher pruning)."""
    return 0.5 * s.sum(dim=2).pow(2).mean(dim=0)


def nonzero_fraction(s: Tensor) -> Tensor:
    """1 − APoZ (Hu et al. 2016): channels that are mostly zero matter least."""
    return (s != 0).float().mean(dim=(0, 2))


def extremes(s: Tensor) -> Tensor:
    """[max, −min] per channel, side by side: a channel is constant where they cancel."""
    import torch

    return torch.cat([s.amax(dim=(0, 2)), (-s).amax(dim=(0, 2))])


def l2_normalized(scores: np.ndarray) -> np.ndarray:
    """Per-layer L2 normalization (Molchanov et al. 2017), so layers rank on one scale."""
    scores = np.asarray(scores, np.float64)
    norm = float(np.linalg.norm(scores))
    return scores / norm if norm > 0 else scores


def kmeans(points: np.ndarray, k: int, rng: np.random.Generator, iterations: int = 25) -> np.ndarray:
    """Each row's cluster among ``k`` (k-means with k-means++ seeding from ``rng``)."""
    k = min(k, len(points))
    centres = [points[rng.integers(len(points))]]
    d2 = ((points - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        centres.append(points[rng.choice(len(points), p=d2 / total)] if total > 0 else points[rng.integers(len(points))])
        d2 = np.minimum(d2, ((points - centres[-1]) ** 2).sum(1))
    centre = np.stack(centres)
    assignment = np.zeros(len(points), dtype=np.int64)
    squared = (points**2).sum(1)[:, None]
    for step in range(iterations):
        # |p − c|² expanded: no (points × centres × features) array for wide filters
        distances = squared - 2 * points @ centre.T + (centre**2).sum(1)[None]
        new = distances.argmin(1)
        if step and (new == assignment).all():
            break
        assignment = new
        for j in range(k):
            members = points[assignment == j]
            if len(members):
                centre[j] = members.mean(0)
    return assignment
