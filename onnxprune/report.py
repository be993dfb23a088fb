"""The report of a pruning run: a typed ``Report`` for code and ``report.json`` for pipelines
(``Report.as_dict``, fields in ``docs/report.schema.json``); ``render`` turns it into what people
read (report.md, the plots, the CLI's summary)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import __version__
from .measure.metrics import QualityDrop

__all__ = [
    "Report", "Macs", "Params", "Flops", "Widths", "LosslessCounts", "Quality", "Verification", "HardwareAware",
    "RoundRecord", "Budget", "Stage", "DataSizes", "Runtime", "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Macs:
    before: int
    after: int


@dataclass(frozen=True)
class Params(Macs):
    fraction: float  # after ÷ before


@dataclass(frozen=True)
class Flops(Params):
    target: int  # the most FLOPs the pruned model may keep


@dataclass(frozen=True)
class Widths:
    """Channels per group, named by its producers."""

    before: dict[str, int]
    after: dict[str, int]


@dataclass(frozen=True)
class LosslessCounts:
    dead_channels_removed: int = 0
    constant_channels_folded: int = 0
    constant_channels_kept: int = 0  # constant, but a padded consumer cannot absorb them


@dataclass(frozen=True)
class Quality:
    """Held-out quality of the original (``before``) and the pruned model (``metrics.compare_outputs``)."""

    before: dict[str, float]
    after: dict[str, float]
    validation_inputs: int
    drop: QualityDrop
    task: str = "regress"  # tasks.TASKS
    # 95 % intervals of the measure --max-drop limits, before and after (intervals.interval)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    # each output's role and its measure's figure for the pruned model (the original's is 1.0)
    outputs: tuple[dict, ...] = ()


@dataclass(frozen=True)
class Verification:
    max_abs_error: float
    validation_inputs: int


@dataclass(frozen=True)
class HardwareAware:
    """The measured width step and latency tables the selector used."""

    device: str
    threads: int
    round_to: int
    layers_measured: int
    original_ms_measured: float
    predicted_fraction: float
    table: str | None = None  # --latency-table: measured on ``device``, not here
    step_candidates: tuple[dict, ...] = ()  # --round-to auto: each step tried, as width_step.StepCandidate
    step_reason: str | None = None  # why round_to won


@dataclass(frozen=True)
class RoundRecord:
    """One row of the trajectory; round 0 is the original model."""

    round: int
    flops: int
    params: int
    flops_fraction: float
    loss: float | None
    agreement: float | None  # top-1 agreement with the original on the held-out data (classifiers)
    latency_fraction_predicted: float | None = None
    quality_drop: float | None = None  # points lost on the held-out data by --max-drop's measure
    extra_steps: int = 0  # more fine-tuning given after the round broke the budget (budget goal)
    kept: bool = True  # False: the round broke the budget even so; the run kept the one before


@dataclass(frozen=True)
class Budget:
    """--max-drop as the goal: where the rounds stopped and why."""

    metric: str
    max_points: float
    minimize: str  # "flops" or "latency"
    kept_round: int  # 0: no round stayed within the budget
    stopped_after: int  # the last round tried
    reason: str


@dataclass(frozen=True)
class DataSizes:
    train: int
    validation: int
    labels: str | None
    calibration: int = 0  # training images scored on each round
    kind: str = "images"  # "images" (decoded as read) or "tensors" (.npy, memory-mapped)
    augment: str = "none"  # fine-tuning views (augment.MODES, auto settled)
    note: str | None = None  # what a small held-out share means for --max-drop (data.small_data_note)
    labelled: int | None = None  # training images with a label, where --labels labels only some


@dataclass(frozen=True)
class Runtime:
    """Where the run ran: torch's device and arithmetic, onnxruntime's device, the processes."""

    torch_device: str
    onnxruntime_device: str
    precision: str
    channels_last: bool
    processes: int
    workers: int  # DataLoader processes per training process


@dataclass(frozen=True)
class Stage:
    """One model the run delivers or compares against, measured alike."""

    name: str  # "original", "pruned", "pruned + INT8", "INT8"
    flops: int
    params: int
    size_bytes: int  # serialized (weights included)
    quality: dict[str, float]  # on the held-out data (``metrics.compare_outputs``)
    quality_drop: float  # points, by --max-drop's measure
    latency_ms: float | None  # median in onnxruntime, timed side by side with the others
    speedup: float | None


@dataclass(frozen=True)
class Recovery:
    """How a final fine-tuning that ran until it stopped improving went: each epoch's loss against
    the original on the held-out images that chose (``selection_images``: the judged share where the
    held-out set is split, else all of it), which epoch's weights were kept, and why it stopped."""

    epochs: int
    steps: int
    kept_epoch: int  # 0: the model as the rounds left it
    stopped: str
    selection_loss: tuple[float, ...]  # before training, then after each epoch
    selection_images: int
    budget_s: float
    seconds: float


@dataclass(frozen=True)
class Report:
    """Everything a pruning run did and measured."""

    model: str | None
    settings: dict[str, Any]
    criterion: str
    flops: Flops
    macs: Macs
    params: Params
    widths: Widths
    lossless: LosslessCounts
    quality: Quality
    batchnorm_inserted: int
    fixed_batch: int | None
    verification: Verification
    latency: dict[str, Any] | None  # bench.BenchResult.as_dict(), with the target's verdict when asked
    hardware_aware: HardwareAware | None
    trajectory: tuple[RoundRecord, ...]
    data: DataSizes
    external_data: bool
    time_s: float
    runtime: Runtime | None = None
    stage_times_s: dict[str, float] = field(default_factory=dict)  # wall seconds per pipeline stage
    resumed_after: str | None = None  # the checkpoint's stage when --resume continued a run
    budget: Budget | None = None  # with --max-drop as the goal
    recovery: Recovery | None = None  # the final fine-tuning, where it ran until it stopped improving
    blocks: dict[str, Any] | None = None  # residual blocks removed whole (--structure both|depth)
    stages: tuple[Stage, ...] = ()  # original, pruned (and pruned + INT8): quality, size, latency
    output: str | None = None  # set by whoever writes the model (the CLI)
    report_folder: str | None = None
    schema_version: int = SCHEMA_VERSION
    onnxprune_version: str = field(default=__version__)

    def written_to(self, output: str | None, report_folder: str) -> Report:
        return replace(self, output=output, report_folder=report_folder)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``report.json``)."""
        d = asdict(self)
        d["quality"]["drop"] = self.quality.drop.as_dict()
        d["quality"]["intervals"] = {k: list(v) for k, v in self.quality.intervals.items()}
        d["quality"]["outputs"] = [dict(row) for row in self.quality.outputs]
        d["trajectory"] = list(d["trajectory"])
        d["stages"] = list(d["stages"])
        if d["recovery"] is not None:
            d["recovery"]["selection_loss"] = list(d["recovery"]["selection_loss"])
        return d
