"""The parts criteria are made of, one small function each.

A criterion = a signal (what it looks at) × a reduction over data and positions × an aggregation
over the group's members × a normalization. Reductions see one batch of a signal shaped
(batch, channels, positions) and return one value per channel; the batches' values are averaged.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["REDUCTIONS", "AGGREGATIONS", "NORMALIZATIONS", "Reduction"]

Reduction = Callable[[torch.Tensor], torch.Tensor]


def abs_of_mean(s: torch.Tensor) -> torch.Tensor:
    """|mean over batch and positions| (Molchanov et al. 2017)."""
    return s.mean(dim=(0, 2)).abs()


def mean(s: torch.Tensor) -> torch.Tensor:
    return s.mean(dim=(0, 2))


def mean_of_abs(s: torch.Tensor) -> torch.Tensor:
    return s.abs().mean(dim=(0, 2))


def mean_of_squares_per_sample(s: torch.Tensor) -> torch.Tensor:
    """mean over samples of (mean over positions)² (Molchanov et al. 2019, per-sample squared)."""
    return s.mean(dim=2).pow(2).mean(dim=0)


def half_mean_of_squared_sums(s: torch.Tensor) -> torch.Tensor:
    """½ · mean over samples of (Σ over positions)² (Theis et al. 2018, Fisher pruning)."""
    return 0.5 * s.sum(dim=2).pow(2).mean(dim=0)


def nonzero_fraction(s: torch.Tensor) -> torch.Tensor:
    """1 − APoZ (Hu et al. 2016): channels that are mostly zero matter least."""
    return (s != 0).float().mean(dim=(0, 2))


def extremes(s: torch.Tensor) -> torch.Tensor:
    """[max, −min] per channel, side by side: a channel is constant where they cancel."""
    return torch.cat([s.amax(dim=(0, 2)), (-s).amax(dim=(0, 2))])


REDUCTIONS: dict[str, Reduction] = {
    "extremes": extremes,
    "abs_of_mean": abs_of_mean,
    "mean": mean,
    "mean_of_abs": mean_of_abs,
    "mean_of_squares_per_sample": mean_of_squares_per_sample,
    "half_mean_of_squared_sums": half_mean_of_squared_sums,
    "nonzero_fraction": nonzero_fraction,
}

AGGREGATIONS: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {
    "sum": lambda parts: np.sum(parts, axis=0),
    "max": lambda parts: np.max(parts, axis=0),
}


def _l2(scores: np.ndarray, flops_per_channel: int) -> np.ndarray:
    """Per-layer L2 normalization (Molchanov et al. 2017), so layers rank on one scale."""
    norm = float(np.linalg.norm(scores))
    return scores / norm if norm > 0 else scores


def _by_flops(scores: np.ndarray, flops_per_channel: int) -> np.ndarray:
    return scores / max(flops_per_channel, 1)


NORMALIZATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "l2": _l2,
    "flops": _by_flops,
    "none": lambda scores, flops_per_channel: scores,
}
