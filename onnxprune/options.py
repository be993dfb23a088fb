"""Every setting of a pruning run, in one place: its default, its help text and its check.

``PruneOptions`` is the one source of truth: the CLI builds its ``prune`` options from these
fields (``onnxprune_cli/options.py``), and ``validate`` is the one check both the CLI and the
Python API run. A new option is one field here and the code that reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from .data.sources import Preprocess, check_source
from .errors import OnnxpruneError
from .graph.files import check_model_file
from .measure.tasks import BOX_LAYOUTS, TASKS, BoxLayout, Task

__all__ = ["PruneOptions", "InvalidOption", "validate", "resolve", "cli_fields", "check_paths"]

Check = Callable[[Any], "str | None"]  # a value → what is wrong with it, or None


class InvalidOption(OnnxpruneError):
    """A setting out of range; ``option`` is its field name (the CLI names the flag)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"--{option.replace('_', '-')} {message}")
        self.option = option
        self.problem = message


def _share(v: float | None) -> str | None:
    return None if v is None or 0 < v <= 1 else f"must be in (0, 1], got {v:g}"


def _at_least(low: float) -> Check:
    def check(v: float | None) -> str | None:
        return None if v is None or v >= low else f"must be at least {low:g}, got {v:g}"
    return check


def _positive(v: float | None) -> str | None:
    return None if v is None or v > 0 else f"must be positive, got {v:g}"


def _between(low: float, high: float, unit: str = "") -> Check:
    def check(v: float) -> str | None:
        return None if v is None or low <= v <= high else f"must be between {low:g} and {high:g}{unit}, got {v:g}"
    return check


def _one_of(*choices: str) -> Check:
    def check(v: str) -> str | None:
        return None if v is None or v in choices else f"must be one of {', '.join(choices)}, not {v!r}"
    return check


def _existing_file(v: str | None) -> str | None:
    return None if v is None or Path(v).is_file() else f"{v}: no such file"


def _round_to(v: int | str) -> str | None:
    if v == "auto":
        return None
    if not isinstance(v, int) or isinstance(v, bool):
        return f"takes a whole number or 'auto', not {v!r}"
    return _at_least(1)(v)


def _criterion(v: str) -> str | None:
    from .criteria import CRITERIA

    return None if v in CRITERIA else f"must be one of {', '.join(sorted(CRITERIA))}, not {v!r}"


def _numbers(v: tuple[float, ...] | None) -> str | None:
    return None if v is None or (len(v) >= 1 and all(isinstance(x, (int, float)) for x in v)) else \
        "takes one number, or one per image channel"


def _size(v: tuple[int, int] | None) -> str | None:
    return None if v is None or (len(v) == 2 and min(v) >= 1) else f"takes two whole numbers ≥ 1 (H W), got {v}"


def option(default: Any, help: str, check: Check | None = None, *, cli: str | None = "",
           metavar: str | None = None, default_text: str | None = None) -> Any:
    """A field with what the CLI and ``validate`` need. ``cli=None`` keeps it out of the CLI; a
    string names the flag when it is not the field's name (``--no-bench`` for ``bench``)."""
    meta = {"help": help, "check": check, "cli": cli, "metavar": metavar, "default_text": default_text}
    return field(default=default, metadata=meta)


# the closed sets of values that drive branches, checked by ``validate`` and by the type checker
Schedule = Literal["iterative", "sfp", "cucb"]
Structure = Literal["auto", "width", "both", "depth"]
Recover = Literal["plain", "dsd"]
Augment = Literal["auto", "none", "shift", "crop", "crop-flip", "mix"]
Precision = Literal["auto", "fp32", "bf16"]
Device = Literal["auto", "cpu", "cuda"]
Minimize = Literal["flops", "latency"]
Quantize = Literal["int8"]


@dataclass(frozen=True)
class PruneOptions:
    """Every setting of a pruning run (docs/options.md is generated from these fields;
    docs/usage.md explains them)."""

    target_flops: float | None = option(
        None, "Keep at most this share of the original FLOPs, in (0, 1].", _share, metavar="SHARE",
        default_text="0.3, or 1 with only --target-latency; none with only --max-drop")
    target_latency: float | None = option(
        None, "Keep at most this share of the original's latency measured in onnxruntime on the device, "
              "in (0, 1]; with --target-flops too, the stricter wins.", _share, metavar="SHARE")
    labels: str | None = option(None, "'imagefolder' (class = sub-folder) or a CSV of file,label rows; images the "
                                      "CSV leaves out are distilled from the original only (few labels are fine).",
                                metavar="imagefolder|FILE.csv")
    val_split: float = option(0.15, "Held-out share of --data (at least 16 images, a third of a set under 48).",
                              _between(0, 0.95), metavar="SHARE")
    val_data: str | None = option(None, "A separate validation folder or .npy instead of --val-split.",
                                  metavar="DIR|FILE.npy")
    unlabeled: str | None = option(
        None, "More images, without labels, that fine-tuning learns from the original on (distillation needs no "
              "label): a folder (recursive) or an .npy/.npz; never held out, judged or scored on.",
        metavar="DIR|FILE.npy")
    input_size: tuple[int, int] | None = option(
        None, "Input height and width for models with symbolic spatial dims.", _size, metavar="H W")
    mean: tuple[float, ...] | None = option(
        None, "Per-channel mean: 0.485,0.456,0.406 or 0.485 0.456 0.406, or one value for all.", _numbers,
        metavar="M[,M,M]", default_text="ImageNet's")
    std: tuple[float, ...] | None = option(
        None, "Per-channel std, written like --mean.", _numbers, metavar="S[,S,S]", default_text="ImageNet's")
    bgr: bool = option(False, "Feed images as BGR (OpenCV/Caffe-trained models).")
    criterion: str = option("taylor", "Channel saliency: taylor, taylor-sq, taylor-abs-w, fisher, l1, l2, bn-scale, "
                                      "mean-activation, apoz, kcp, random, or one registered in onnxprune.criteria.",
                            _criterion,
                            metavar="NAME")
    rounds: int | None = option(None, "Prune/fine-tune rounds (with --max-drop as the goal: at most this many).",
                                _at_least(1), metavar="N", default_text="≤10 % of FLOPs per round")
    round_steps: int | None = option(None, "Fine-tuning steps after each round.", _at_least(0), metavar="N",
                                     default_text="one epoch, ≤20")
    epochs: float | None = option(
        None, "Final fine-tuning, in passes over the training share; by default it goes on while the pruned "
              "model's loss against the original on held-out images improves (see --time-budget).", _at_least(0),
        metavar="EPOCHS", default_text="until it stops improving")
    time_budget: float | None = option(
        None, "Seconds the final fine-tuning may take when it runs until it stops improving.", _positive,
        metavar="SECONDS", default_text="50 epochs, within 30 min")
    recover: Recover = option(
        "plain", "How the final fine-tuning trains: plain, or dsd: dense, then sparse (each weight tensor's "
                 "smallest --dsd-sparsity held at zero), then dense again at a tenth of --lr (Han et al.); the "
                 "written model is dense either way.", _one_of("plain", "dsd"), metavar="plain|dsd")
    dsd_sparsity: float = option(0.3, "Share of each weight tensor held at zero in DSD's sparse phase.",
                                 _between(0, 0.95), metavar="SHARE")
    lr: float = option(1e-3, "Fine-tuning learning rate (Adam).", _positive, metavar="RATE")
    batch_size: int = option(32, "Batch size for scoring and fine-tuning.", _at_least(1), metavar="N")
    round_to: int | str = option(
        "auto", "Keep widths multiples of N, or 'auto': measure each layer's latency on this device, choose the "
                "width step by timing the model pruned at several steps, and remove channels where latency falls "
                "most.", _round_to, metavar="N|auto")
    min_channels: int = option(1, "Fewest channels a group keeps (also never below 10 % of its width).",
                               _at_least(1), metavar="N")
    flops_weight: float = option(0.1, "How much FLOPs saved weigh against saliency when ranking channels.",
                                 _at_least(0), metavar="W")
    calibration_images: int = option(128, "Training images channels are scored on each round (a seeded "
                                           "subset, held in memory).", _at_least(1), metavar="N")
    judge_views: int | None = option(
        None, "Inputs each held-out image is judged as, itself and shifts of it, the original's outputs the "
              "reference (the runs without labels).", _at_least(1), metavar="N",
        default_text="enough for about 192 inputs, at most 12 an image, within what a judgement may cost")
    val_images: int = option(500, "At most this many held-out images (a seeded subset of --val-split or "
                                  "--val-data).", _at_least(1), metavar="N")
    lossless: bool = option(True, "Skip removing channels that are dead or constant on the data.",
                            cli="--no-lossless")
    reconstruct: bool = option(
        True, "Skip refitting, after each cut, the layers that read the removed channels (least squares on "
              "the calibration images, so that each layer's output stays what it was).", cli="--no-reconstruct")
    feature_hints: bool = option(
        False, "Fine-tuning also pulls the pruned model's stage-end feature maps towards the original's, "
               "through 1×1 projections dropped before writing (FitNets hints): more signal per image when "
               "images are few (benchmarks/tasks.py --hints measures it).")
    structure: Structure = option(
        "auto", "What is removed: width (channels), both (whole residual blocks first, those whose removal moves "
                "the outputs least per millisecond saved, up to half of what the target removes, where they move "
                "them no more than as many FLOPs of channels would; then channels), depth (blocks as far as the "
                "target allows, channels for the rest; both and depth need --target-flops or --target-latency), "
                "or auto: both under a FLOPs or latency target, width with --max-drop alone as the goal.",
        _one_of("auto", "width", "both", "depth"), metavar="auto|width|both|depth")
    schedule: Schedule = option(
        "iterative", "iterative: slice every round; sfp: zero the dropped channels and keep training them, "
                     "slice once at the end (Soft Filter Pruning); cucb: each round's fine-tuning runs only the "
                     "channels a combinatorial UCB bandit picks at each step, and keeps those that earned most.",
        _one_of("iterative", "sfp", "cucb"), metavar="iterative|sfp|cucb")
    augment: Augment = option(
        "auto", "Fine-tuning views, the original model as teacher on the same view: shift (rolled by up to 1/16 of "
                "H and W), crop (random resized crop of 25-100 % of the area), crop-flip (that, mirrored half the "
                "time), mix (shift, then contrast, brightness and noise jittered and each input mixed with another "
                "of the batch; a classifier's labels are mixed by the same weights), none, or auto: mix without labels "
                "(the original is the only teacher), shift for a classifier with labels (it kept more accuracy than "
                "mix), none for other labelled runs (their labels do not follow a moved or mixed input).",
        _one_of("auto", "none", "shift", "crop", "crop-flip", "mix"), metavar="auto|none|shift|crop|crop-flip|mix")
    workers: int | None = option(None, "DataLoader processes that decode and augment images.", _at_least(0),
                                 metavar="N", default_text="half the cores, ≤8")
    precision: Precision = option("auto", "Fine-tuning arithmetic: bf16 autocast, fp32, or auto: bf16 on a CUDA GPU "
                                    "that supports it (with channels-last), fp32 elsewhere.",
                            _one_of("auto", "fp32", "bf16"), metavar="auto|fp32|bf16")
    resume: bool = option(False, "Continue a killed run from its last finished round (the checkpoint in the "
                                 "report folder); the model, data and settings must be the same.")
    checkpoint_dir: str | None = option(None, "Where each finished round is saved for --resume (the CLI: "
                                              "<output>.report/checkpoint).", cli=None)
    seed: int = option(0, "Seed for the split, scoring and fine-tuning.", _at_least(0), metavar="N")
    device: Device = option("auto", "Where fine-tuning runs (auto: CUDA when there is a GPU).",
                         _one_of("auto", "cpu", "cuda"), metavar="auto|cpu|cuda")
    bench: bool = option(True, "Skip timing original and pruned model in onnxruntime.", cli="--no-bench")
    bench_runs: int = option(30, "Interleaved timed runs per model.", _at_least(1), cli=None)
    bench_threads: int | None = option(None, "onnxruntime threads for timing (default: all cores).",
                                       _at_least(1), cli=None)
    max_drop: float | None = option(
        None, "Quality points the pruned model may lose on the held-out data, by its task's measure (accuracy "
              "with labels, top-1 agreement, mAP@0.5, mIoU, string agreement, neighbour agreement, explained "
              "variance: see --task); beyond it nothing is written but the report, exit 1. "
              "100 turns it off. Given without --target-flops or --target-latency it is the goal: prune round by "
              "round while the model stays within it and keep the smallest that does.",
        _between(0, 100, " points"), metavar="PTS", default_text="3")
    task: Task | Literal["auto"] = option(
        "auto", "What the model is for, which sets the measure --max-drop limits: classify (accuracy or top-1 "
                "agreement), detect (mAP@0.5 of decoded boxes after NMS), segment (mIoU of the per-pixel argmax, or "
                "IoU of a one-channel map binarized at --mask-threshold), ctc (greedy-decoded strings: exact "
                "agreement, character error rate), embed (nearest-neighbour agreement, cosine), regress (explained "
                "variance), or auto: from the outputs and the graph. Without labels the original's result is the "
                "reference.", _one_of("auto", *TASKS),
        metavar="|".join(("auto", *TASKS)))
    box_layout: BoxLayout | None = option(
        None, "How a detector's output holds boxes: cxcywh-classes (N, 4+C, A: YOLOv8), cxcywh-obj-classes "
              "(N, A, 5+C: YOLOv5, YOLOX), xyxy-score-class (N, K, 6: decoded in the graph); heads of several "
              "outputs: gfl (class scores and 4×B distance bins per stride: PicoDet, NanoDet, unfused YOLOv8), "
              "centernet (a heatmap with size and offset maps), anchors (box deltas and scores per prior: SSD, "
              "RetinaNet, RetinaFace).",
        _one_of(*BOX_LAYOUTS), metavar="|".join(BOX_LAYOUTS),
        default_text="from the output's shape")
    mask_threshold: float = option(0.3, "Where a one-channel probability map is binarized (--task segment; DB-style "
                                        "text detectors use 0.3).", _between(0, 1), metavar="P")
    blank: int | None = option(None, "The CTC blank class (--task ctc).", _at_least(0), metavar="CLASS",
                               default_text="the class most steps choose")
    metric: str | None = option(
        None, "Your own quality measure, module:function taking (original's outputs, pruned outputs, labels or "
              "None) as lists of batch-first arrays and returning a score where higher is better (points are "
              "100 × its fall).", metavar="MODULE:FUNCTION")
    minimize: Minimize | None = option(
        None, "With --max-drop as the goal: the smallest model by FLOPs, or by latency (predicted from this "
              "device's tables or --latency-table).", _one_of("flops", "latency"), metavar="flops|latency",
        default_text="flops")
    latency_table: str | None = option(
        None, "Latency tables measured on the device the model will run on (onnxprune profile-device); "
              "hardware-aware widths and --target-latency use them instead of measuring here.", _existing_file,
        metavar="FILE")
    quantize: Quantize | None = option(
        None, "Quantize the pruned model to INT8 (onnxruntime static QDQ, per-channel weights, calibrated on "
              "--data) and check it against the original within --max-drop; --target-flops 1 quantizes "
              "without pruning.", _one_of("int8"), metavar="int8")

    @property
    def budget_goal(self) -> bool:
        """--max-drop alone: the quality budget is the goal (settled by ``resolve``)."""
        return self.target_flops is None and self.target_latency is None

    @property
    def flops_share(self) -> float:
        """The share of the FLOPs to keep: --target-flops, or all of them with the budget as the goal."""
        return 1.0 if self.target_flops is None else self.target_flops

    @property
    def drop_limit(self) -> float:
        """--max-drop as ``resolve`` settled it (3 when not given)."""
        if self.max_drop is None:
            raise ValueError("PruneOptions used before resolve() settled max_drop")
        return self.max_drop

    @property
    def preprocess(self) -> Preprocess:
        default = Preprocess()
        return Preprocess(self.mean or default.mean, self.std or default.std, self.bgr)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready settings (tuples as lists), for the report."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def cli_fields() -> list[Any]:
    """The fields the CLI offers, in declaration order."""
    return [f for f in fields(PruneOptions) if f.metadata.get("cli") is not None]


def validate(o: PruneOptions) -> None:
    """The one check of every setting; raises ``InvalidOption`` naming the first bad one."""
    for f in fields(o):
        check = f.metadata.get("check")
        problem = check(getattr(o, f.name)) if check else None
        if problem:
            raise InvalidOption(f.name, problem)


def resolve(target_flops: float | None, options: dict[str, Any]) -> PruneOptions:
    """Options from the API's keywords, checked, with the goal settled: a FLOPs target of 0.3
    when nothing is asked, 1.0 when only a latency target is; none when only ``max_drop`` is
    given (the budget is the goal, ``budget_goal``); ``max_drop`` 3 when not given."""
    unknown = set(options) - {f.name for f in fields(PruneOptions)}
    if unknown:
        raise OnnxpruneError(f"unknown option(s) {', '.join(sorted(unknown))}")
    o = PruneOptions(target_flops=target_flops, **options)
    validate(o)
    settled: dict[str, Any] = {}
    if o.target_flops is None and (o.target_latency is not None or o.max_drop is None):
        settled["target_flops"] = 0.3 if o.target_latency is None else 1.0
    if o.max_drop is None:
        settled["max_drop"] = 3.0
    o = PruneOptions(**{**asdict(o), **settled})
    # blocks need a target to take their share of; the budget as the goal has none
    blocks_can_go = not o.budget_goal and ((o.target_flops or 1.0) < 1 or (o.target_latency or 1.0) < 1)
    if o.structure == "auto":
        o = replace(o, structure="both" if blocks_can_go else "width")
    if o.structure != "width" and not blocks_can_go:
        raise InvalidOption("structure", f"{o.structure} removes blocks towards a target: give --target-flops or "
                                         "--target-latency below 1")
    if o.budget_goal and o.schedule == "sfp":
        raise InvalidOption("schedule", "sfp slices once at the end, so it needs a --target-flops or "
                                        "--target-latency to know where the end is")
    if o.minimize is not None and not o.budget_goal:
        raise InvalidOption("minimize", "applies when --max-drop alone is the goal; with --target-flops or "
                                        "--target-latency the target says what to minimize")
    return o



def check_paths(model: Any, data: Any, labels: str | None = None, val_data: str | None = None,
                unlabeled: str | None = None) -> None:
    """Refuse a missing model, data folder, labels CSV, --val-data or --unlabeled before any work
    (the CLI runs this before torch or onnx is imported); a model or data given as objects is not
    a path."""
    if isinstance(model, (str, Path)):
        check_model_file(model)
    if isinstance(data, (str, Path)):
        check_source(data, labels)
    if val_data:
        check_source(val_data, labels, flag="--val-data")
    if unlabeled:
        check_source(unlabeled, None, flag="--unlabeled")
