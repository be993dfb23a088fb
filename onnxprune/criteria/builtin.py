"""The criteria that ship, each citing its paper; variants share one function."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .parts import (
    abs_of_mean, activation, half_mean_of_squared_sums, l2_normalized, mean_of_abs, mean_of_squares_per_sample,
    kmeans, nonzero_fraction, taylor_product,
)
from .registry import Observation, register

if TYPE_CHECKING:  # annotations only: naming the criteria (--criterion's check) then needs no onnx
    from ..graph.groups import ChannelGroup
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
    """How badly its cluster's representative stands in for each filter: the producers' filters
    are clustered (k-means, about √channels clusters); the filter nearest each cluster's centre
    represents it and scores highest, and every other filter scores its distance from that
    representative. A filter its cluster already represents goes first; the cluster itself stays."""
    filters = stats.producer_filters(group)
    if filters.shape[1] == 0 or group.channels < 3:
        return l2(group, stats)
    assignment = kmeans(filters, max(2, round(np.sqrt(group.channels))), stats.rng)
    scores = np.zeros(group.channels)
    representatives = []
    for cluster in np.unique(assignment):
        members = np.flatnonzero(assignment == cluster)
        centre = filters[members].mean(0)
        representative = members[np.argmin(np.linalg.norm(filters[members] - centre, axis=1))]
        scores[members] = np.linalg.norm(filters[members] - filters[representative], axis=1)
        representatives.append(representative)
    scores[representatives] = scores.max() + 1e-12 if scores.max() > 0 else 1.0
    return l2_normalized(scores)


@register("taylor-abs-w", observes=Observation(taylor_product, mean_of_abs, gradient=True),
          paper="benchmarks/criteria.py --taxonomy: beat taylor on oracle ρ and on accuracy pruned once")
def taylor_abs_weighted(group: ChannelGroup, stats: Stats) -> np.ndarray:
    """mean |activation × gradient| times the producers' filter L2 norm, L2-normalized per group:
    the combination of the taxonomy search that beat taylor on both of its measures."""
    norms = stats.producer_norms(group, order=2)
    return l2_normalized(stats.observed_sum(group) * (norms if norms.any() else 1.0))
