"""The pruning job, end to end: the one function the CLI and the Python API call.

    load → import → lossless pass → rounds of {score → select → slice → fine-tune}
         → final fine-tune → verify → report

The ONNX model is the source of truth: each round slices it with the one slicer and re-imports
the torch view, whose fine-tuned weights are written back into the initializers.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from math import ceil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from . import __version__
from .batch import restore_batch
from .batchnorm import fold_inserted, insert_batchnorm, needs_batchnorm, output_statistics
from .bench import BenchResult, benchmark
from .criteria import get
from .data import Dataset, Preprocess, load_data, split
from .errors import OnnxpruneError, QualityBudgetExceeded
from .finetune import Targets, TrainSettings
from .flops import count
from .groups import GroupAnalysis, analyze_groups, predict_shapes
from .importer import max_difference
from .latency import measure_granularity, measure_latency
from .load import LoadedModel, load
from .lossless import LosslessResult, lossless_pass
from .metrics import compare_outputs, quality_drop
from .nodes import is_inserted
from .runtime import cuda_available
from .report import SCHEMA_VERSION
from .select import Selection, floor_for, group_step, select
from .session import TorchView
from .slice import slice_model, zero_channels
from .verify import run_batched, verify

__all__ = ["PruneOptions", "PruneResult", "prune"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PruneOptions:
    """Every setting of a pruning run; the CLI's options map one to one onto these."""

    target_flops: float = 0.3  # prune() makes it 1.0 when only target_latency is given
    target_latency: float | None = None  # keep at most this share of the measured latency
    criterion: str = "taylor"
    rounds: int | None = None  # default: each round removes at most ~10 % of the FLOPs
    round_steps: int | None = None  # fine-tuning steps between rounds; default one epoch, ≤ 20
    epochs: float = 10.0  # final fine-tuning, in passes over the training share
    lr: float = 1e-3
    batch_size: int = 32
    round_to: int | str = "auto"  # a number, or "auto": measured granularity and latency tables
    min_channels: int = 1
    flops_weight: float = 0.1
    calibration_batches: int = 4
    lossless: bool = True
    schedule: str = "iterative"  # or "sfp": zero channels each round, slice once at the end
    augment: bool = False  # shift fine-tuning batches, the teacher seeing the same shift
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
    max_drop: float = 3.0  # quality points the pruned model may lose (metrics.quality_drop); 100: off


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
    if o.target_latency is not None and not 0 < o.target_latency <= 1:
        raise OnnxpruneError(
            f"--target-latency must be in (0, 1] (the share of the measured latency to keep), got {o.target_latency}")
    if o.round_to != "auto" and (not isinstance(o.round_to, int) or isinstance(o.round_to, bool)):
        raise OnnxpruneError(f"--round-to must be a whole number or 'auto', not {o.round_to!r}")
    for name, value in (("batch-size", o.batch_size), ("round-to", 1 if o.round_to == "auto" else o.round_to),
                        ("min-channels", o.min_channels),
                        ("calibration-batches", o.calibration_batches)):
        if value < 1:
            raise OnnxpruneError(f"--{name} must be at least 1, got {value}")
    if o.rounds is not None and o.rounds < 1:
        raise OnnxpruneError(f"--rounds must be at least 1, got {o.rounds}")
    if not 0 <= o.max_drop <= 100:
        raise OnnxpruneError(f"--max-drop must be between 0 and 100 points, got {o.max_drop}")
    if o.lr <= 0 or o.epochs < 0:
        raise OnnxpruneError("--lr must be positive and --epochs not negative")
    get(o.criterion)
    if o.schedule not in ("iterative", "sfp"):
        raise OnnxpruneError(f"--schedule must be iterative or sfp, not {o.schedule!r}")


def _steps(analysis: GroupAnalysis, original_width: dict[frozenset, int], round_to: int, auto: bool) -> dict[int, int]:
    """Each group's width step: --round-to N as asked, or the measured step (auto), kept fine
    enough for narrow groups; from the group's original width, so it holds across rounds."""
    return {g.id: group_step(original_width.get(frozenset(g.producers), g.channels), round_to) if auto else round_to
            for g in analysis.prunable}


def _floors(analysis: GroupAnalysis, original_width: dict[frozenset, int], o: PruneOptions,
            steps: dict[int, int]) -> dict[int, int]:
    """Each group's floor, from its width in the original model (groups keep their producers)."""
    return {
        g.id: floor_for(original_width.get(frozenset(g.producers), g.channels), o.min_channels, steps[g.id])
        for g in analysis.prunable
    }


def _widths(analysis: GroupAnalysis) -> dict[str, int]:
    return {" + ".join(g.producers) or f"group {g.id}": g.channels for g in analysis.groups if g.producers}


def prune(
    model: str | Path | onnx.ModelProto,
    data: str | Path | Dataset | np.ndarray,
    target_flops: float | None = None,
    *,
    progress: Callable[[str, int, int], None] | None = None,
    **options: Any,
) -> PruneResult:
    """Prune ``model`` to at most ``target_flops`` of its FLOPs (default 0.3) and, with
    ``target_latency``, to at most that share of its measured latency; returns the verified model
    and report.

    ``data`` is an image folder, an .npy/.npz file, a ``Dataset`` or an array of model inputs.
    ``options`` are ``PruneOptions`` fields. ``progress(stage, done, total)`` is called as long
    steps advance. Nothing is written to disk (except the latency cache, see ``latency.cache_dir``).
    """
    tick = progress or (lambda stage, done, total: None)
    unknown = set(options) - set(PruneOptions.__dataclass_fields__)
    if unknown:
        raise OnnxpruneError(f"unknown option(s) {', '.join(sorted(unknown))}")
    if target_flops is None:
        target_flops = 0.3 if options.get("target_latency") is None else 1.0
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
    teacher_fn = _teacher(loaded, image) if o.augment else None
    targets = Targets(teacher_train, train.labels, teacher_fn)
    settings = TrainSettings(lr=o.lr, batch_size=o.batch_size, seed=o.seed, device=device,
                             spatial_dims=(2, 3) if image.layout == "NCHW" else (1, 2))

    analysis = analyze_groups(loaded)
    n_calib = min(len(train), o.calibration_batches * o.batch_size)
    calib = train.inputs[:n_calib]
    work = _with_batchnorm(loaded, analysis, calib)  # the model the rounds prune
    if work is not loaded:
        analysis = analyze_groups(work)
    base = analysis.cost
    target_abs = int(o.target_flops * base.flops)
    original_width = {frozenset(g.producers): g.channels for g in analysis.groups}
    widths_before = _widths(analysis)
    if not analysis.prunable and o.target_flops < 1:
        reasons = sorted({r for g in analysis.groups for r in g.blocked})[:3]
        raise OnnxpruneError(f"nothing in this model can be pruned ({'; '.join(reasons)})")

    ort_device = "cuda" if device == "cuda" and cuda_available() else "cpu"
    threads = o.bench_threads or os.cpu_count() or 1
    latency = None
    round_to = o.round_to if isinstance(o.round_to, int) else 1
    if o.round_to == "auto" or o.target_latency is not None:
        if o.round_to == "auto":
            log.info("measuring how latency moves with channel counts on this device (cached)")
            round_to = measure_granularity(ort_device, threads)
        latency = measure_latency(work.model, analysis, image, ort_device, threads, granularity=round_to,
                                  progress=lambda d, t: tick("measuring layer latency", d, t))
    auto = o.round_to == "auto"
    floors = _floors(analysis, original_width, o, _steps(analysis, original_width, round_to, auto))
    best_shapes = predict_shapes(analysis, floors)
    best = count(loaded.model, best_shapes)
    if best.flops > target_abs:
        raise OnnxpruneError(
            f"the target of {100 * o.target_flops:g}% FLOPs cannot be reached: with every prunable group at its "
            f"floor the model keeps {best.flops / base.flops:.1%} ({analysis.prunable_flops_share():.0%} of "
            "its FLOPs are in prunable layers); raise --target-flops or lower --min-channels"
        )
    base_ms = latency.predict(base, analysis.shapes) if latency else None
    if o.target_latency is not None and latency.predict(best, best_shapes) > o.target_latency * base_ms:
        raise OnnxpruneError(
            f"the target of {100 * o.target_latency:g}% latency cannot be reached: with every prunable group at its "
            f"floor the model is predicted to take {latency.predict(best, best_shapes) / base_ms:.0%} of its "
            f"{latency.original_ms:.2f} ms; raise --target-latency or lower --min-channels"
        )

    recipe = get(o.criterion)
    calib_targets = Targets([t[:n_calib] for t in teacher_train],
                            None if train.labels is None else train.labels[:n_calib])
    view = TorchView.of(work.model, image)
    trajectory: list[dict[str, Any]] = [
        {"round": 0, "flops": base.flops, "params": base.params, "flops_fraction": 1.0, "loss": None,
         "agreement": 1.0 if teacher_val[0].ndim == 2 and teacher_val[0].shape[1] > 1 else None}
    ]

    freed = LosslessResult(view.model, 0, 0, 0)
    if o.lossless:
        freed = lossless_pass(view, analysis, calib, o.batch_size, o.seed,
                              _steps(analysis, original_width, round_to, auto))
        if freed.dead or freed.folded:
            check = run_batched(freed.model, image.name, calib)
            ref = run_batched(loaded.model, image.name, calib)
            # exact up to summation order: the same tolerance as verification
            if not max_difference(check, ref)[2]:
                raise OnnxpruneError("removing dead or constant channels changed the outputs; please report this model")
            view = TorchView.of(freed.model, image)
            log.info("lossless pass: removed %d channels that are zero and folded %d that are constant on all "
                     "calibration data", freed.dead, freed.folded)
        if freed.constant_kept:
            log.info("lossless pass: kept %d constant channels whose consumers cannot absorb them (padding)",
                     freed.constant_kept)

    strictest = min(o.target_flops, 1.0 if o.target_latency is None else o.target_latency)
    rounds = o.rounds or max(1, ceil((1 - strictest) / 0.1 - 1e-9))
    per_round = o.round_steps if o.round_steps is not None else min(20, ceil(len(train) / o.batch_size))

    def prune_round(r: int, label: str, analysis: GroupAnalysis, goal: int, goal_ms: float | None,
                    soft: bool) -> Selection:
        """Score, choose, slice (or zero, ``soft``) and fine-tune: one round."""
        nonlocal view
        tick(f"{label}: scoring", 0, 1)
        scores = view.scores(analysis, recipe, calib, o.batch_size, calib_targets, o.seed + r)
        tick(f"{label}: scoring", 1, 1)
        steps = _steps(analysis, original_width, round_to, auto)
        chosen = select(view.model, analysis, scores, goal, _floors(analysis, original_width, o, steps),
                        steps, o.flops_weight, latency, goal_ms)
        cut = zero_channels if soft else slice_model
        view = TorchView.of(cut(view.model, analysis, chosen.keep), image)
        losses = view.finetune(train.inputs, targets, per_round, settings,
                               lambda step, _: tick(f"{label}: fine-tuning", step + 1, per_round))
        agreement = compare_outputs(run_batched(view.model, image.name, val.inputs), teacher_val, None)
        trajectory.append({
            "round": r, "flops": chosen.flops, "params": chosen.params,
            "flops_fraction": chosen.flops / base.flops,
            "latency_fraction_predicted": chosen.latency_ms / base_ms if latency else None,
            "loss": float(np.mean(losses[-5:])) if losses else None,
            "agreement": agreement.get("top1_agreement"),
        })
        log.info("%s: %.1f%% of FLOPs left%s", label, 100 * chosen.flops / base.flops,
                 f", fine-tune loss {trajectory[-1]['loss']:.4f}" if losses else "")
        return chosen

    reached = True
    for r in range(1, rounds + 1):
        analysis = analyze_groups(LoadedModel(view.model, image, None))
        share = r / rounds
        goal = int(base.flops * (1 - (1 - o.target_flops) * share)) if r < rounds else target_abs
        goal_ms = None if o.target_latency is None else base_ms * (1 - (1 - o.target_latency) * share)
        if analysis.cost.flops <= goal and (goal_ms is None or latency.predict(analysis.cost, analysis.shapes) <= goal_ms):
            continue
        reached = prune_round(r, f"round {r}/{rounds}", analysis, goal, goal_ms,
                              soft=o.schedule == "sfp" and r < rounds).reached
        if not reached:
            break

    # The prediction chose; the device decides. Where the measured latency is above the target,
    # a new predicted goal is taken from how measured followed predicted so far and one more round
    # runs (twice at most). The median decides here, not median + noise: a noisy check must not
    # let a miss through.
    points = [(1.0, 1.0)]  # (predicted, measured) shares of the original; the original is exact
    for attempt in range(1, 3 if o.target_latency is not None and reached else 1):
        check = benchmark([("original", loaded.model), ("pruned", view.model)], image, device=ort_device,
                          threads=threads, runs=o.bench_runs)
        measured = check.timings[1].median_ms / check.timings[0].median_ms
        if measured <= o.target_latency:
            break
        analysis = analyze_groups(LoadedModel(view.model, image, None))
        predicted = latency.predict(analysis.cost, analysis.shapes) / base_ms
        points.append((predicted, measured))
        log.info("measured latency %.1f%% of the original against %.1f%% predicted: pruning once more",
                 100 * measured, 100 * predicted)
        goal_ms = base_ms * _corrected_goal(points, o.target_latency)
        if not prune_round(rounds + attempt, f"latency correction {attempt}", analysis, target_abs, goal_ms,
                           soft=False).reached:
            break

    final_steps = ceil(o.epochs * ceil(len(train) / o.batch_size))
    log.info("final fine-tuning: %d steps", final_steps)
    view.finetune(train.inputs, targets, final_steps, settings,
                  lambda step, _: tick("final fine-tuning", step + 1, final_steps))

    final = fold_inserted(view.model)  # BatchNorm added for fine-tuning goes back into the convs
    written = restore_batch(final, loaded.fixed_batch)  # the user's signature
    max_err = verify(written, view.imported.module, image.name, val.inputs, loaded.fixed_batch)
    final_analysis = analyze_groups(LoadedModel(final, image, None))
    after = final_analysis.cost
    if after.flops > target_abs:
        blocked = ", ".join(sorted({r for g in final_analysis.groups for r in g.blocked})[:2])
        raise OnnxpruneError(
            f"the target of {100 * o.target_flops:g}% FLOPs cannot be reached: the best is "
            f"{after.flops / base.flops:.1%} (every group is at its floor or blocked: {blocked}); "
            "raise --target-flops or lower --min-channels"
        )
    pruned_val = run_batched(final, image.name, val.inputs)
    before_metrics = compare_outputs(teacher_val, teacher_val, val.labels)
    after_metrics = compare_outputs(pruned_val, teacher_val, val.labels)
    budget = quality_drop(before_metrics, after_metrics, o.max_drop)

    timing = None
    if o.bench or o.target_latency is not None:  # a latency target is confirmed by measuring
        log.info("timing original and pruned model in onnxruntime (%d interleaved runs)", o.bench_runs)
        result = benchmark([("original", loaded.model), ("pruned", final)], image, device=ort_device,
                           threads=threads, runs=o.bench_runs)
        timing = result.as_dict()
        if o.target_latency is not None:
            measured, timing["target_met"] = _latency_met(result, o.target_latency)
            timing["target"] = o.target_latency
            if not timing["target_met"]:
                log.warning("measured latency is %.1f%% of the original, above the --target-latency of %.1f%% "
                            "by more than the timing noise (predicted %.1f%%); lower the target a little",
                            100 * measured, 100 * o.target_latency, 100 * latency.predict(after, final_analysis.shapes) / base_ms)
    hardware = None
    if latency:
        hardware = {"device": latency.device, "threads": latency.threads, "round_to": round_to,
                    "layers_measured": len(latency.layers), "original_ms_measured": latency.original_ms,
                    "predicted_fraction": latency.predict(after, final_analysis.shapes) / base_ms}

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
        "lossless": {"dead_channels_removed": freed.dead, "constant_channels_folded": freed.folded,
                     "constant_channels_kept": freed.constant_kept},
        "quality": {"before": before_metrics, "after": after_metrics, "validation_inputs": len(val),
                    "drop": budget.as_dict()},
        "batchnorm_inserted": sum(is_inserted(n) for n in work.model.graph.node),
        "fixed_batch": loaded.fixed_batch,
        "verification": {"max_abs_error": max_err, "validation_inputs": len(val)},
        "latency": timing,
        "hardware_aware": hardware,
        "trajectory": trajectory,
        "data": {"train": len(train), "validation": len(val), "labels": o.labels},
        "external_data": loaded.external_data,
        "time_s": round(time.perf_counter() - started, 2),
    }
    if not budget.within:
        raise QualityBudgetExceeded(budget.message(), report)
    return PruneResult(written, report)


def _corrected_goal(points: list[tuple[float, float]], target: float) -> float:
    """The predicted latency share to aim for so that the measured share lands on ``target``.

    On the line through the last two (predicted, measured) points: where fixed per-node costs
    remain (MobileNetV2 on a CPU), measured latency falls more slowly than predicted, which
    scaling by measured ÷ predicted (a line through the origin) ignores — it took two
    corrections to come within 8 % of the target. Where the points do not slope down together
    (noise), that scaling is used; a nearly flat line (noise too) may not go below half of it.
    """
    (p0, m0), (p1, m1) = points[-2:]
    proportional = p1 * target / m1
    if p0 > p1 and m0 > m1:
        return max(p1 - (m1 - target) * (p0 - p1) / (m0 - m1), proportional / 2)
    return proportional


def _latency_met(result: BenchResult, target: float) -> tuple[float, bool]:
    """The pruned model's measured share of the original's latency, and whether it is within the
    target give or take the timing noise (the report's verdict)."""
    original, pruned = result.timings
    measured = pruned.median_ms / original.median_ms
    return measured, measured <= target * (1 + max(original.spread, pruned.spread))


def _teacher(loaded: LoadedModel, image) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The original model in torch, frozen, for distilling on augmented batches."""
    view = TorchView.of(loaded.model, image, check=False)
    module = view.imported.module.eval()
    for p in module.parameters():
        p.requires_grad_(False)

    def run(x: torch.Tensor) -> list[torch.Tensor]:
        module.to(x.device)
        return view.run(module, x)

    return run


def _with_batchnorm(loaded: LoadedModel, analysis: GroupAnalysis, calib: np.ndarray) -> LoadedModel:
    """``loaded`` with an identity BatchNorm after each conv that lost it to folding (see
    batchnorm.py), or ``loaded`` itself when the model keeps its BatchNorm."""
    convs = needs_batchnorm(loaded.model, analysis.shapes)
    if not convs:
        return loaded
    names = [c.output[0] for c in convs]
    mean, var = output_statistics(loaded.model, names, loaded.image.name, calib)
    return replace(loaded, model=insert_batchnorm(loaded.model, convs, mean, var))


def _dataset(data: str | Path | Dataset | np.ndarray, loaded: LoadedModel, o: PruneOptions) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, np.ndarray):
        expected = loaded.image.shape(1)[1:]
        if data.ndim != 4 or tuple(data.shape[1:]) != expected:
            raise OnnxpruneError(f"data of shape {data.shape} does not fit the model's input (N, {expected})")
        return Dataset(data.astype(np.float32), None, tuple(str(i) for i in range(len(data))))
    return load_data(data, loaded.image, o.preprocess, o.labels)
