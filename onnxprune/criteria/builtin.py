"""The criteria that ship, each citing its paper; variants share one function."""

from __future__ import annotations

import numpy as np

from ..groups import ChannelGroup
from .registry import Observation, register
from .parts import (
    abs_of_mean, activation, half_mean_of_squared_sums, l2_normalized, mean_of_abs, mean_of_squares_per_sample,
    kmeans, nonzero_fraction, taylor_product,
)
from .stats import Stats

__all__: list[str] = []


def observed(group: ChannelGroup, stats: Stats) -> np.ndarray:
    """The observed signal summed over every tensor that carries the group, L2-normalized."""
    return l2_normalized(stats.observed_sum(group))


for _name, _reduce, _paper in (
    ("taylor", abs_of_mean, "Molchanov et al. 2017, first-order Taylor"),
    ("taylor-sq", mean_of_squares_per_sample, "Molchanov et al. 2019"),
    ("fisher", half_mean_of_squared_sums, "Theis et al. 2018, Fisher pruning"),
):
    register(_name, observes=Observation(taylor_product, _reduce, gradient=True), paper=_paper)(observed)
register("mean-activation", observes=Observation(activation, mean_of_abs),
         paper="Molchanov et al. 2017 baseline")(observed)
register("apoz", observes=Observation(activation, nonzero_fraction), paper="Hu et al. 2016, APoZ")(observed)


@register("l1", paper="Li et al. 2017, filter L1 norm")
def l1(group: ChannelGroup, stats: Stats) -> np.ndarray:
    return l2_normalized(stats.producer_norms(group, order=1))


@register("l2", paper="Li et al. 2017, filter L2 norm")
def l2(group: ChannelGroup, stats: Stats) -> np.ndarray:
    return l2_normalized(stats.producer_norms(group, order=2))


@register("bn-scale", paper="Liu et al. 2017, network slimming (|gamma|)")
def bn_scale(group: ChannelGroup, stats: Stats) -> np.ndarray:
    """|γ| of the group's BatchNorms; filter L2 norms where it has none."""
    scales = stats.batchnorm_scales(group)
    return l2_normalized(scales) if scales is not None else l2(group, stats)


@register("random")
def random(group: ChannelGroup, stats: Stats) -> np.ndarray:
    return stats.rng.random(group.channels)


@register("kcp", paper="Yu, Wu & Chen 2021, kernel cluster pruning")
def kcp(group: ChannelGroup, stats: Stats) -> np.ndarray:
    """How badly the rest of its cluster represents each filter: the producers' filters are
    clustered (k-means, about √channels clusters) and a filter scores its distance to the centre
    of the other members of its cluster. A filter its cluster already represents is redundant;
    one alone in its cluster scores its distance to the nearest other filter."""
    filters = stats.producer_filters(group)
    if filters.shape[1] == 0 or group.channels < 3:
        return l2(group, stats)
    assignment = kmeans(filters, max(2, round(np.sqrt(group.channels))), stats.rng)
    sizes = np.bincount(assignment)[assignment]
    sums = np.zeros((assignment.max() + 1, filters.shape[1]))
    np.add.at(sums, assignment, filters)
    rest = (sums[assignment] - filters) / np.maximum(sizes - 1, 1)[:, None]  # the centre without the filter
    scores = np.linalg.norm(filters - rest, axis=1)
    for c in np.flatnonzero(sizes == 1):
        scores[c] = np.linalg.norm(np.delete(filters, c, axis=0) - filters[c], axis=1).min()
    return l2_normalized(scores)
