"""The frozen context every pruning stage reads (``stages.prepare`` builds it), and the clock
that times the stages for the report."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..data.sources import Dataset
from ..graph.groups import GroupAnalysis
from ..graph.load import LoadedModel
from ..measure.metrics import compare_outputs
from ..measure.tasks import Measure, Task, TaskSettings, measure
from ..options import PruneOptions
from ..torchview.distributed import Ranks
from ..torchview.finetune import Targets, TrainSettings
from ..torchview.teacher import Teacher
from .checkpoint import Checkpoints

log = logging.getLogger(__name__)

__all__ = ["Run", "Models", "Data", "Judge", "Training", "Hardware", "HeldOut", "Progress", "StageClock"]

Progress = Callable[[str, int, int], None]  # (stage, done, total); "… fine-tuning" stages count images


@dataclass(frozen=True)
class HeldOut:
    """What judges the pruned model: the held-out images, each as several views where they are
    few (the images themselves first, ``prepare.held_out_views``), the original's outputs on every
    view, the image each view shows, and which images the decisions are made on."""

    items: Dataset
    reference: list[np.ndarray]  # the original's outputs on ``items``
    image_of: np.ndarray  # per item, the position of the held-out image it is a view of
    judged: np.ndarray | None = None  # held-out images the decisions are made on; the others report

    @property
    def images(self) -> int:
        return len(np.unique(self.image_of))

    @property
    def views(self) -> int:
        return len(self.items) // max(self.images, 1)

    def part(self, judging: bool) -> tuple[Dataset, list[np.ndarray], np.ndarray | None]:
        """The items (and the original's outputs on them) that decide (``judging``) or that
        report — all of them where nothing is chosen — and the image of each where an image has
        several views (bootstraps draw whole images), else None."""
        if self.judged is None:
            positions = np.arange(len(self.items))
        else:
            images = self.judged if judging else np.setdiff1d(np.unique(self.image_of), self.judged)
            positions = np.flatnonzero(np.isin(self.image_of, images))
        clusters = self.image_of[positions] if self.views > 1 else None
        return self.items.subset(positions), [t[positions] for t in self.reference], clusters


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
class Judge:
    """What judges a pruned model: the held-out items and the task's measure, with the
    original's figures on them computed once and kept (a cache, not state)."""

    held: HeldOut  # ``val`` as views, and the original's outputs on them
    task: Task = "regress"
    task_settings: TaskSettings = TaskSettings()
    _original: dict = field(default_factory=dict, repr=False, compare=False)

    def original(self, judging: bool = False, intervals: bool = False) -> tuple[Measure, dict[str, float]]:
        """The original's measure and figures on the held-out items (``held.part``), computed once
        per run and kept: every judgement of a pruned model compares with them."""
        if (judging, intervals) not in self._original:
            val, reference, clusters = self.held.part(judging)
            measured = measure(self.task, reference, reference, val.labels, self.task_settings, full=intervals,
                               clusters=clusters)
            figures = compare_outputs(reference, reference, val.labels) | measured.extras
            figures[measured.metric] = measured.figure()
            if measured.undefined and not self._original:  # said once, when first measured
                log.warning("%s on the %d held-out inputs; judging by %s instead", measured.undefined, len(val),
                            measured.metric.replace("_", " "))
            self._original[judging, intervals] = (measured, figures)
        return self._original[judging, intervals]

    @property
    def metric(self) -> str:
        """The measure --max-drop limits for this model and data (the task's, or accuracy or
        agreement as the labels allow)."""
        return self.original()[0].metric


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
