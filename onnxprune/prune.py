"""The pruning job, end to end: the one function the CLI and the Python API call.

    load → import → lossless pass → rounds of {score → select → slice → fine-tune}
         → final fine-tune → verify → report

The ONNX model is the source of truth: each round slices it with the one slicer and re-imports
the torch view, whose fine-tuned weights are written back into the initializers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from math import ceil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from . import __version__
from .criteria import Recipe, get
from .data import Dataset, Preprocess, load_data, split
from .errors import OnnxpruneError
from .finetune import Targets, TrainSettings
from .groups import GroupAnalysis, analyze_groups, predict_cost
from .importer import TOLERANCE
from .load import LoadedModel, load
from .metrics import compare_outputs
from .report import SCHEMA_VERSION
from .select import floor_for, select
from .session import TorchView
from .slice import slice_model
from .verify import run_batched, verify

__all__ = ["PruneOptions", "PruneResult", "prune"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneOptions:
    """Every setting of a pruning run; the CLI's options map one to one onto these."""

    target_flops: float = 0.3
    criterion: str = "taylor"
    rounds: int | None = None  # default: each round removes at most ~10 % of the FLOPs
    round_steps: int | None = None  # fine-tuning steps between rounds; default one epoch, ≤ 20
    epochs: float = 10.0  # final fine-tuning, in passes over the training share
    lr: float = 1e-3
    batch_size: int = 32
    round_to: int = 1
    min_channels: int = 1
    flops_weight: float = 0.1
    calibration_batches: int = 4
    lossless: bool = True
    labels: str | None = None
    val_split: float = 0.15
    val_data: str | None = None
    input_size: tuple[int, int] | None = None
    preprocess: Preprocess = field(default_factory=Preprocess)
    seed: int = 0
    device: str = "auto"
    bench: bool = True  # time original and pruned in onnxruntime after verification
    bench_runs: int = 30
    bench_threads: int | None = None


@dataclass
class PruneResult:
    model: onnx.ModelProto
    report: dict[str, Any]


def _device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise OnnxpruneError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    if requested not in ("cpu", "cuda"):
        raise OnnxpruneError(f"--device must be cpu, cuda or auto, not {requested!r}")
    return requested


def _check_options(o: PruneOptions) -> None:
    if not 0 < o.target_flops <= 1:
        raise OnnxpruneError(f"--target-flops must be in (0, 1] (the share of FLOPs to keep), got {o.target_flops}")
    for name, value in (("batch-size", o.batch_size), ("round-to", o.round_to), ("min-channels", o.min_channels),
                        ("calibration-batches", o.calibration_batches)):
        if value < 1:
            raise OnnxpruneError(f"--{name} must be at least 1, got {value}")
    if o.rounds is not None and o.rounds < 1:
        raise OnnxpruneError(f"--rounds must be at least 1, got {o.rounds}")
    if o.lr <= 0 or o.epochs < 0:
        raise OnnxpruneError("--lr must be positive and --epochs not negative")
    get(o.criterion)


def _floors(analysis: GroupAnalysis, original_width: dict[frozenset, int], o: PruneOptions) -> dict[int, int]:
    """Each group's floor, from its width in the original model (groups keep their producers)."""
    return {
        g.id: floor_for(original_width.get(frozenset(g.producers), g.channels), o.min_channels, o.round_to)
        for g in analysis.prunable
    }


def _widths(analysis: GroupAnalysis) -> dict[str, int]:
    return {" + ".join(g.producers) or f"group {g.id}": g.channels for g in analysis.groups if g.producers}


def _lossless(view: TorchView, analysis: GroupAnalysis, inputs: np.ndarray, o: PruneOptions) -> tuple[onnx.ModelProto, int]:
    """Remove channels that are zero wherever they are read, on all calibration data."""
    recipe = Recipe("activation", "peak_abs", normalize="none")
    observed = view.observe(analysis, recipe, inputs, o.batch_size, None, o.seed)
    keep: dict[int, np.ndarray] = {}
    from .criteria.score import score_groups

    peaks = score_groups(recipe, view.model, analysis, observed)
    for gid, peak in peaks.items():
        alive = np.flatnonzero(peak > 0)
        if len(alive) < len(peak):
            keep[gid] = alive if len(alive) else np.array([int(np.argmax(peak))])
    if not keep:
        return view.model, 0
    dead = sum(analysis.group(g).channels - len(k) for g, k in keep.items())
    return slice_model(view.model, analysis, keep), dead


def prune(
    model: str | Path | onnx.ModelProto,
    data: str | Path | Dataset | np.ndarray,
    target_flops: float = 0.3,
    **options: Any,
) -> PruneResult:
    """Prune ``model`` to at most ``target_flops`` of its FLOPs; returns the verified model and report.

    ``data`` is an image folder, an .npy/.npz file, a ``Dataset`` or an array of model inputs.
    ``options`` are ``PruneOptions`` fields. Nothing is written to disk.
    """
    unknown = set(options) - set(PruneOptions.__dataclass_fields__)
    if unknown:
        raise OnnxpruneError(f"unknown option(s) {', '.join(sorted(unknown))}")
    o = PruneOptions(target_flops=target_flops, **options)
    _check_options(o)
    started = time.perf_counter()
    torch.manual_seed(o.seed)
    device = _device(o.device)
    loaded = load(model, o.input_size)
    image = loaded.image

    dataset = _dataset(data, loaded, o)
    if o.val_data:
        train, val = dataset, load_data(o.val_data, image, o.preprocess, o.labels)
    else:
        train, val = split(dataset, o.val_split, o.seed)
    log.info("data: %d training and %d validation inputs", len(train), len(val))

    teacher_train = run_batched(loaded.model, image.name, train.inputs)
    teacher_val = run_batched(loaded.model, image.name, val.inputs)
    targets = Targets(teacher_train, train.labels)
    settings = TrainSettings(lr=o.lr, batch_size=o.batch_size, seed=o.seed, device=device)

    analysis = analyze_groups(loaded)
    base = analysis.cost
    target_abs = int(o.target_flops * base.flops)
    original_width = {frozenset(g.producers): g.channels for g in analysis.groups}
    widths_before = _widths(analysis)
    if not analysis.prunable and o.target_flops < 1:
        reasons = sorted({r for g in analysis.groups for r in g.blocked})[:3]
        raise OnnxpruneError(f"nothing in this model can be pruned ({'; '.join(reasons)})")

    floors = _floors(analysis, original_width, o)
    best = predict_cost(loaded.model, analysis, floors)
    if best.flops > target_abs:
        raise OnnxpruneError(
            f"the target of {o.target_flops:.0%} FLOPs cannot be reached: with every prunable group at its "
            f"floor the model keeps {best.flops / base.flops:.1%} ({analysis.prunable_flops_share():.0%} of "
            "its FLOPs are in prunable layers); raise --target-flops or lower --min-channels"
        )

    recipe = get(o.criterion)
    n_calib = min(len(train), o.calibration_batches * o.batch_size)
    calib = train.inputs[:n_calib]
    calib_targets = Targets([t[:n_calib] for t in teacher_train],
                            None if train.labels is None else train.labels[:n_calib])
    view = TorchView.of(loaded.model, image)
    trajectory: list[dict[str, Any]] = [
        {"round": 0, "flops": base.flops, "params": base.params, "flops_fraction": 1.0, "loss": None,
         "agreement": 1.0 if teacher_val[0].ndim == 2 and teacher_val[0].shape[1] > 1 else None}
    ]

    dead = 0
    if o.lossless:
        pruned, dead = _lossless(view, analysis, calib, o)
        if dead:
            check = run_batched(pruned, image.name, calib)
            ref = run_batched(loaded.model, image.name, calib)
            # exact up to summation order: the same tolerance as verification
            if not all(np.abs(a - b).max(initial=0) <= TOLERANCE * max(np.abs(b).max(initial=0), 1e-3)
                       for a, b in zip(check, ref)):
                raise OnnxpruneError("removing dead channels changed the outputs; please report this model")
            view = TorchView.of(pruned, image)
            log.info("lossless pass: removed %d channels that are zero on all calibration data", dead)

    rounds = o.rounds or max(1, ceil((1 - o.target_flops) / 0.1 - 1e-9))
    per_round = o.round_steps if o.round_steps is not None else min(20, ceil(len(train) / o.batch_size))
    reached = True
    for r in range(1, rounds + 1):
        analysis = analyze_groups(LoadedModel(view.model, image, None))
        goal = int(base.flops * (1 - (1 - o.target_flops) * r / rounds)) if r < rounds else target_abs
        if analysis.cost.flops <= goal:
            continue
        scores = view.scores(analysis, recipe, calib, o.batch_size, calib_targets, o.seed + r)
        chosen = select(view.model, analysis, scores, goal, _floors(analysis, original_width, o),
                        o.round_to, o.flops_weight)
        reached = chosen.reached
        view = TorchView.of(slice_model(view.model, analysis, chosen.keep), image)
        losses = view.finetune(train.inputs, targets, per_round, settings)
        agreement = compare_outputs(run_batched(view.model, image.name, val.inputs), teacher_val, None)
        trajectory.append({
            "round": r, "flops": chosen.flops, "params": chosen.params,
            "flops_fraction": chosen.flops / base.flops,
            "loss": float(np.mean(losses[-5:])) if losses else None,
            "agreement": agreement.get("top1_agreement"),
        })
        log.info("round %d/%d: %.1f%% of FLOPs left%s", r, rounds, 100 * chosen.flops / base.flops,
                 f", fine-tune loss {trajectory[-1]['loss']:.4f}" if losses else "")
        if not reached:
            break

    final_steps = ceil(o.epochs * ceil(len(train) / o.batch_size))
    log.info("final fine-tuning: %d steps", final_steps)
    view.finetune(train.inputs, targets, final_steps, settings)

    final = view.model
    max_err = verify(final, view.imported.module, image.name, val.inputs)
    final_analysis = analyze_groups(LoadedModel(final, image, None))
    after = final_analysis.cost
    if after.flops > target_abs:
        blocked = ", ".join(sorted({r for g in final_analysis.groups for r in g.blocked})[:2])
        raise OnnxpruneError(
            f"the target of {o.target_flops:.0%} FLOPs cannot be reached: the best is "
            f"{after.flops / base.flops:.1%} (every group is at its floor or blocked: {blocked}); "
            "raise --target-flops or lower --min-channels"
        )
    pruned_val = run_batched(final, image.name, val.inputs)
    before_metrics = compare_outputs(teacher_val, teacher_val, val.labels)
    after_metrics = compare_outputs(pruned_val, teacher_val, val.labels)

    latency = None
    if o.bench:
        from .bench import benchmark

        log.info("timing original and pruned model in onnxruntime (%d interleaved runs)", o.bench_runs)
        latency = benchmark([("original", loaded.model), ("pruned", final)], image,
                            device="cuda" if device == "cuda" else "cpu", threads=o.bench_threads,
                            runs=o.bench_runs).as_dict()

    report = {
        "schema_version": SCHEMA_VERSION,
        "onnxprune_version": __version__,
        "model": str(loaded.source) if loaded.source else None,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(o).items()
                     if k != "preprocess"} | {"preprocess": asdict(o.preprocess), "device": device},
        "criterion": o.criterion,
        "flops": {"before": base.flops, "after": after.flops, "fraction": after.flops / base.flops,
                  "target": target_abs},
        "macs": {"before": base.macs, "after": after.macs},
        "params": {"before": base.params, "after": after.params, "fraction": after.params / max(base.params, 1)},
        "widths": {"before": widths_before, "after": _widths(final_analysis)},
        "lossless": {"dead_channels_removed": dead},
        "quality": {"before": before_metrics, "after": after_metrics, "validation_inputs": len(val)},
        "verification": {"max_abs_error": max_err, "validation_inputs": len(val)},
        "latency": latency,
        "trajectory": trajectory,
        "data": {"train": len(train), "validation": len(val), "labels": o.labels},
        "external_data": loaded.external_data,
        "time_s": round(time.perf_counter() - started, 2),
    }
    return PruneResult(final, report)


def _dataset(data: str | Path | Dataset | np.ndarray, loaded: LoadedModel, o: PruneOptions) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, np.ndarray):
        expected = loaded.image.shape(1)[1:]
        if data.ndim != 4 or tuple(data.shape[1:]) != expected:
            raise OnnxpruneError(f"data of shape {data.shape} does not fit the model's input (N, {expected})")
        return Dataset(data.astype(np.float32), None, tuple(str(i) for i in range(len(data))))
    return load_data(data, loaded.image, o.preprocess, o.labels)
