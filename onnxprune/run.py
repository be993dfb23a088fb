"""The frozen context every pruning stage reads (``pipeline.prepare`` builds it)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .data import Dataset
from .finetune import Targets, TrainSettings
from .groups import GroupAnalysis
from .load import LoadedModel
from .options import PruneOptions

__all__ = ["Run", "Progress"]

Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass(frozen=True)
class Run:
    """What every stage reads: the options, the models, the data and where things run. Settled
    by ``prepare`` before the first round and never changed."""

    options: PruneOptions
    loaded: LoadedModel  # the user's model, normalized, its batch freed
    work: LoadedModel  # what the rounds prune: ``loaded``, plus BatchNorm where it was folded
    work_groups: GroupAnalysis
    train: Dataset
    val: Dataset
    teacher_val: list[np.ndarray]  # the original's outputs on the held-out inputs
    targets: Targets  # what fine-tuning learns from
    calib: np.ndarray  # the inputs channels are scored on, every round
    calib_targets: Targets
    settings: TrainSettings
    round_steps: int  # fine-tuning steps after each round
    device: str  # where torch runs
    ort_device: str  # where onnxruntime measures latency
    threads: int
    progress: Progress
