"""The criteria registry: names to score functions and what each observes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import OnnxpruneError

if TYPE_CHECKING:
    from ..graph.groups import ChannelGroup
    from .stats import Stats

__all__ = ["Criterion", "Observation", "ScoreFn", "CRITERIA", "register", "get"]

ScoreFn = Callable[["ChannelGroup", "Stats"], np.ndarray]
Tensor = Any  # a torch.Tensor; typed loosely so this module stays torch-free


@dataclass(frozen=True)
class Observation:
    """What a data criterion watches on each consumer's input.

    ``signal(activation, gradient)`` gives a (batch, channels, positions) tensor and
    ``reduce`` one value per channel of it, per batch; ``gradient`` says whether the scoring
    loss must be back-propagated (the gradient is None otherwise).
    """

    signal: Callable[[Tensor, Tensor | None], Tensor]
    reduce: Callable[[Tensor], Tensor]
    gradient: bool = False


@dataclass(frozen=True)
class Criterion:
    name: str
    score: ScoreFn
    observes: Observation | None  # None: it reads weights only
    paper: str = ""


CRITERIA: dict[str, Criterion] = {}


def register(name: str, *, observes: Observation | None = None, paper: str = "") -> Callable[[ScoreFn], ScoreFn]:
    """Add ``fn`` to the registry under ``name`` (a decorator; the function is returned as is)."""

    def add(fn: ScoreFn) -> ScoreFn:
        CRITERIA[name] = Criterion(name, fn, observes, paper)
        return fn

    return add


def get(name: str) -> Criterion:
    if name not in CRITERIA:
        raise OnnxpruneError(f"unknown criterion {name!r}; choose from {', '.join(sorted(CRITERIA))}")
    return CRITERIA[name]

