"""The pruning job, end to end: the one function the CLI and the Python API call.

    load → data and teacher → plan widths → lossless pass → rounds of {score → select → slice →
    fine-tune} → [latency correction] → final fine-tune → verify → measure → report

The ONNX model is the source of truth: each round slices it with the one slicer and re-imports
the torch view, whose fine-tuned weights are written back into the initializers. Every stage is
a function of the run's frozen context (``Run``) and what the stage before it returned.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from math import ceil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from .batch import restore_batch
from .batchnorm import fold_inserted, insert_batchnorm, needs_batchnorm, output_statistics
from .bench import benchmark
from .data import Dataset, load_data, split
from .errors import OnnxpruneError, QualityBudgetExceeded
from .finetune import Targets, TrainSettings
from .groups import GroupAnalysis, analyze_groups
from .load import LoadedModel, load
from .lossless import LosslessResult
from .metrics import compare_outputs, is_classifier_output, quality_drop
from .nodes import is_inserted
from .options import PruneOptions, resolve
from .run import Progress, Run
from .report import (
    DataSizes, Flops, HardwareAware, LosslessCounts, Macs, Params, Quality, Report, RoundRecord, Verification, Widths,
)
from .rounds import WidthPlan, correct_latency, latency_met, plan_widths, prune_in_rounds, remove_lossless
from .runtime import run_devices
from .session import TorchView
from .verify import run_batched, verify

__all__ = ["PruneOptions", "PruneResult", "prune", "prepare"]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class PruneResult:
    model: onnx.ModelProto  # verified, with the file's own input signature
    report: Report


def prune(
    model: str | Path | onnx.ModelProto,
    data: str | Path | Dataset | np.ndarray,
    target_flops: float | None = None,
    *,
    progress: Progress | None = None,
    **options: Any,
) -> PruneResult:
    """Prune ``model`` to at most ``target_flops`` of its FLOPs (default 0.3) and, with
    ``target_latency``, to at most that share of its measured latency; returns the verified model
    and its report.

    ``data`` is an image folder, an .npy/.npz file, a ``Dataset`` or an array of model inputs.
    ``options`` are ``PruneOptions`` fields. ``progress(stage, done, total)`` is called as long
    steps advance. Nothing is written to disk (except the latency cache, see ``latency.cache_dir``).
    """
    o = resolve(target_flops, options)
    started = time.perf_counter()
    torch.manual_seed(o.seed)
    run = prepare(load(model, o.input_size), data, o, progress or (lambda stage, done, total: None))
    analysis = run.work_groups
    plan = plan_widths(run, analysis)
    view, freed = remove_lossless(run, plan, TorchView.of(run.work.model, run.work.image), analysis)
    view, records, reached = prune_in_rounds(run, plan, view)
    if o.target_latency is not None and reached:
        view = correct_latency(run, plan, view, records)
    final_steps = ceil(o.epochs * ceil(len(run.train) / o.batch_size))
    log.info("final fine-tuning: %d steps", final_steps)
    view.finetune(run.train.inputs, run.targets, final_steps, run.settings,
                  lambda step, _: run.progress("final fine-tuning", step + 1, final_steps))

    final = fold_inserted(view.model)  # BatchNorm added for fine-tuning goes back into the convs
    written = restore_batch(final, run.loaded.fixed_batch)  # the user's signature
    max_err = verify(written, view.imported.module, run.loaded.image.name, run.val.inputs, run.loaded.fixed_batch)
    final_groups = analyze_groups(LoadedModel(final, run.loaded.image, None))
    _check_reached(o, plan, final_groups)
    quality = measure_quality(run, final)
    timing = measure_latency(run, plan, final, final_groups)
    report = build_report(run, plan, analysis, final_groups, freed, records, quality, max_err, timing,
                          time.perf_counter() - started)
    if not quality.drop.within:
        raise QualityBudgetExceeded(quality.drop.message(), report)
    return PruneResult(written, report)


def prepare(loaded: LoadedModel, data: str | Path | Dataset | np.ndarray, o: PruneOptions,
            progress: Progress) -> Run:
    """Split the data, run the original on it (the teacher) and add BatchNorm where it was folded."""
    image = loaded.image
    device, ort_device = run_devices(o.device)
    dataset = _dataset(data, loaded, o)
    if o.val_data:
        train, val = dataset, load_data(o.val_data, image, o.preprocess, o.labels)
    else:
        train, val = split(dataset, o.val_split, o.seed)
    log.info("data: %d training and %d validation inputs", len(train), len(val))

    teacher_train = run_batched(loaded.model, image.name, train.inputs)
    teacher_val = run_batched(loaded.model, image.name, val.inputs)
    teacher_fn = _teacher(loaded) if o.augment else None
    settings = TrainSettings(lr=o.lr, batch_size=o.batch_size, seed=o.seed, device=device,
                             spatial_dims=(2, 3) if image.layout == "NCHW" else (1, 2))
    analysis = analyze_groups(loaded)
    n_calib = min(len(train), o.calibration_batches * o.batch_size)
    calib = train.inputs[:n_calib]
    work = _with_batchnorm(loaded, analysis, calib)
    return Run(
        options=o, loaded=loaded, work=work, work_groups=analysis if work is loaded else analyze_groups(work),
        train=train, val=val, teacher_val=teacher_val,
        targets=Targets(teacher_train, train.labels, teacher_fn), calib=calib,
        calib_targets=Targets([t[:n_calib] for t in teacher_train],
                              None if train.labels is None else train.labels[:n_calib]),
        settings=settings,
        round_steps=o.round_steps if o.round_steps is not None else min(20, ceil(len(train) / o.batch_size)),
        device=device, ort_device=ort_device, threads=o.bench_threads or os.cpu_count() or 1,
        progress=progress,
    )


def _check_reached(o: PruneOptions, plan: WidthPlan, final: GroupAnalysis) -> None:
    if final.cost.flops > plan.target_flops:
        blocked = ", ".join(sorted({r for g in final.groups for r in g.blocked})[:2])
        raise OnnxpruneError(
            f"the target of {100 * o.target_flops:g}% FLOPs cannot be reached: the best is "
            f"{final.cost.flops / plan.base.flops:.1%} (every group is at its floor or blocked: {blocked}); "
            "raise --target-flops or lower --min-channels"
        )


def measure_quality(run: Run, final: onnx.ModelProto) -> Quality:
    """The original's and the pruned model's quality on the held-out data, and the drop."""
    val, o = run.val, run.options
    before = compare_outputs(run.teacher_val, run.teacher_val, val.labels)
    after = compare_outputs(run_batched(final, run.loaded.image.name, val.inputs), run.teacher_val, val.labels)
    return Quality(before, after, len(val), quality_drop(before, after, o.max_drop))


def measure_latency(run: Run, plan: WidthPlan, final: onnx.ModelProto, final_groups: GroupAnalysis
                    ) -> dict[str, Any] | None:
    """Original and pruned timed side by side in onnxruntime (a latency target is always
    confirmed by measuring), with the target's verdict."""
    o = run.options
    if not o.bench and o.target_latency is None:
        return None
    log.info("timing original and pruned model in onnxruntime (%d interleaved runs)", o.bench_runs)
    result = benchmark([("original", run.loaded.model), ("pruned", final)], run.loaded.image,
                       device=run.ort_device, threads=run.threads, runs=o.bench_runs)
    timing = result.as_dict()
    if o.target_latency is not None:
        measured, timing["target_met"] = latency_met(result, o.target_latency)
        timing["target"] = o.target_latency
        if not timing["target_met"]:
            log.warning("measured latency is %.1f%% of the original, above the --target-latency of %.1f%% by more "
                        "than the timing noise (predicted %.1f%%); lower the target a little", 100 * measured,
                        100 * o.target_latency, 100 * plan.predicted_fraction(final_groups))
    return timing


def build_report(run: Run, plan: WidthPlan, original: GroupAnalysis, final: GroupAnalysis, freed: LosslessResult,
                 records: list[RoundRecord], quality: Quality, max_err: float, timing: dict[str, Any] | None,
                 seconds: float) -> Report:
    o, base, after = run.options, plan.base, final.cost
    first = RoundRecord(0, base.flops, base.params, 1.0, None,
                        1.0 if is_classifier_output(run.teacher_val[0].shape) else None)
    hardware = None
    if plan.latency:
        hardware = HardwareAware(plan.latency.device, plan.latency.threads, plan.round_to, len(plan.latency.layers),
                                 plan.latency.original_ms, plan.predicted_fraction(final))
    return Report(
        model=str(run.loaded.source) if run.loaded.source else None,
        settings=o.as_dict() | {"device": run.device},
        criterion=o.criterion,
        flops=Flops(base.flops, after.flops, after.flops / base.flops, plan.target_flops),
        macs=Macs(base.macs, after.macs),
        params=Params(base.params, after.params, after.params / max(base.params, 1)),
        widths=Widths(_widths(original), _widths(final)),
        lossless=LosslessCounts(freed.dead, freed.folded, freed.constant_kept),
        quality=quality,
        batchnorm_inserted=sum(is_inserted(n) for n in run.work.model.graph.node),
        fixed_batch=run.loaded.fixed_batch,
        verification=Verification(max_err, len(run.val)),
        latency=timing,
        hardware_aware=hardware,
        trajectory=(first, *records),
        data=DataSizes(len(run.train), len(run.val), o.labels),
        external_data=run.loaded.external_data,
        time_s=round(seconds, 2),
    )


def _widths(analysis: GroupAnalysis) -> dict[str, int]:
    return {" + ".join(g.producers) or f"group {g.id}": g.channels for g in analysis.groups if g.producers}


def _teacher(loaded: LoadedModel) -> Callable[[torch.Tensor], list[torch.Tensor]]:
    """The original model in torch, frozen, for distilling on augmented batches."""
    view = TorchView.of(loaded.model, loaded.image, check=False)
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
