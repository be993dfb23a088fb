"""The frozen context every pruning stage reads (``stages.prepare`` builds it), and the clock
that times the stages for the report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..data.sources import Dataset
from ..graph.groups import GroupAnalysis
from ..graph.load import LoadedModel
from ..options import PruneOptions
from ..torchview.distributed import Ranks
from ..torchview.finetune import Targets, TrainSettings
from ..torchview.teacher import Teacher
from .checkpoint import Checkpoints
from .judging import Judge

log = logging.getLogger(__name__)

__all__ = ["Run", "Models", "Data", "Training", "Hardware", "Progress", "StageClock"]

Progress = Callable[[str, int, int], None]  # (stage, done, total); "… fine-tuning" stages count images


@dataclass(frozen=True)
class Models:
    """The user's model and the one the stages prune."""

    original: LoadedModel  # the user's model, normalized, its batch freed
    work: LoadedModel  # what the rounds prune: ``original``, plus BatchNorm where it was folded
    work_groups: GroupAnalysis  # the channel groups of ``work``


@dataclass(frozen=True)
class Data:
    """The images: read lazily batch by batch, but for the calibration set held in memory."""

    train: Dataset
    val: Dataset  # the held-out images: bounded (--val-images)
    calibration: np.ndarray  # the inputs channels are scored on, every round (--calibration-images)
    calibration_targets: Targets  # the original's outputs on them (and labels where there are)
    calibration_extremes: dict[str, np.ndarray] | None = None  # per tensor, [max, −min] per channel


@dataclass(frozen=True)
class Training:
    settings: TrainSettings
    round_steps: int  # fine-tuning steps after each round


@dataclass(frozen=True)
class Hardware:
    device: str  # where torch runs
    ort_device: str  # where onnxruntime measures latency
    threads: int  # onnxruntime's threads when timing
    ranks: Ranks  # this process's place under torchrun


@dataclass(frozen=True)
class Run:
    """What every stage reads, in a few parts: the options, the models, the data, the judge, the
    teacher, how fine-tuning runs and on what hardware. Settled by ``prepare`` before the first
    round and never changed."""

    options: PruneOptions
    model: Models
    data: Data
    judge: Judge
    teacher: Teacher  # the original's outputs for each fine-tuning batch
    training: Training
    hardware: Hardware
    progress: Progress
    checkpoints: Checkpoints


class StageClock:
    """Wall seconds per named stage, in the order they ran (a stage may run more than once)."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def total(self) -> float:
        return time.perf_counter() - self.started

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 2) for k, v in self.seconds.items()}
