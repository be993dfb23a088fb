"""Pruning criteria: one small function each, registered by name (``../shared/STYLE.md`` rule 3).

A criterion maps a group and the statistics observed for it (``Stats``) to one score per
channel, higher meaning more important. One that looks at data declares what it observes on
the tensors the group's consumers read (``Observation``: a signal of the activation and its
gradient, reduced per channel each batch); ``observe`` computes exactly that in torch.

    @register("my-criterion", observes=Observation(activation, mean_of_abs))
    def my_criterion(group: ChannelGroup, stats: Stats) -> np.ndarray:
        return l2_normalized(stats.observed_sum(group))

The registry imports no torch: listing and validating names is cheap.
"""

from __future__ import annotations

from . import builtin  # noqa: F401  (registers the criteria that ship)
from .registry import CRITERIA, Criterion, Observation, ScoreFn, get, register

__all__ = ["Criterion", "Observation", "ScoreFn", "CRITERIA", "register", "get"]
