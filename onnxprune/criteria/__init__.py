"""Pruning criteria, each a named combination of parts (see ``parts``).

    signal        what it looks at: activations, gradients, their product ("taylor"),
                  weight norms, BatchNorm scales, or nothing ("random")
    reduction     how it reduces over data and positions (``parts.REDUCTIONS``)
    aggregate     how the members of a group combine (sum, max)
    normalize     per-layer L2, by FLOPs saved, or none

A new criterion is a new ``register(name, Recipe(...))`` line, not new code.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import OnnxpruneError
from .parts import AGGREGATIONS, NORMALIZATIONS, REDUCTIONS

__all__ = ["Recipe", "CRITERIA", "register", "get", "DATA_SIGNALS", "WEIGHT_SIGNALS"]

DATA_SIGNALS = ("activation", "gradient", "taylor")
WEIGHT_SIGNALS = ("weight_l1", "weight_l2", "bn_scale", "random")


@dataclass(frozen=True)
class Recipe:
    """What a criterion looks at and how it turns that into one score per channel."""

    signal: str
    reduction: str = "abs_of_mean"  # only for data signals
    aggregate: str = "sum"
    normalize: str = "l2"
    paper: str = ""

    def __post_init__(self) -> None:
        if self.signal not in DATA_SIGNALS + WEIGHT_SIGNALS:
            raise ValueError(f"unknown signal {self.signal!r}")
        if self.reduction not in REDUCTIONS or self.aggregate not in AGGREGATIONS:
            raise ValueError(f"unknown reduction or aggregation in {self}")
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {self.normalize!r}")

    @property
    def needs_data(self) -> bool:
        return self.signal in DATA_SIGNALS


CRITERIA: dict[str, Recipe] = {}


def register(name: str, recipe: Recipe) -> Recipe:
    CRITERIA[name] = recipe
    return recipe


def get(name: str) -> Recipe:
    if name not in CRITERIA:
        raise OnnxpruneError(f"unknown criterion {name!r}; choose from {', '.join(sorted(CRITERIA))}")
    return CRITERIA[name]


register("taylor", Recipe("taylor", "abs_of_mean", paper="Molchanov et al. 2017, first-order Taylor"))
register("taylor-sq", Recipe("taylor", "mean_of_squares_per_sample", paper="Molchanov et al. 2019"))
register("fisher", Recipe("taylor", "half_mean_of_squared_sums", paper="Theis et al. 2018, Fisher pruning"))
register("l1", Recipe("weight_l1", paper="Li et al. 2017, filter L1 norm"))
register("l2", Recipe("weight_l2", paper="Li et al. 2017, filter L2 norm"))
register("bn-scale", Recipe("bn_scale", paper="Liu et al. 2017, network slimming (|gamma|)"))
register("mean-activation", Recipe("activation", "mean_of_abs", paper="Molchanov et al. 2017 baseline"))
register("apoz", Recipe("activation", "nonzero_fraction", paper="Hu et al. 2016, APoZ"))
register("random", Recipe("random", normalize="none"))
