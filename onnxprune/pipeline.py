"""The pruning job, end to end: the one function the CLI and the Python API call.

    load → data and teacher → plan widths → lossless pass → rounds of {score → select → slice →
    fine-tune} → [latency correction] → final fine-tune → verify → measure → report

The ONNX model is the source of truth: each round slices it with the one slicer and re-imports
the torch view, whose fine-tuned weights are written back into the initializers. Every stage is
a function of the run's frozen context (``Run``) and what the stage before it returned.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields, replace
from math import ceil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from .data.sources import UNLABELLED, Dataset, small_data_note
from .errors import OnnxpruneError, QualityBudgetExceeded
from .graph.batchnorm import fold_inserted
from .graph.groups import GroupAnalysis, analyze_groups
from .graph.load import LoadedModel, load
from .graph.nodes import is_inserted
from .graph.output_axes import is_classifier_output, restore_signature
from .measure.bench import benchmark
from .options import PruneOptions, check_paths, resolve
from .report import (
    Budget, DataSizes, Flops, HardwareAware, LosslessCounts, Macs, Params, Quality, Recovery, Report, RoundRecord,
    Runtime, Stage, Verification, Widths,
)
from .stages.budget import prune_within_budget
from .stages.checkpoint import Checkpoint, Checkpoints
from .stages.context import Progress, Run, StageClock
from .stages.depth import remove_blocks_first
from .stages.lossless import LosslessResult, remove_lossless
from .stages.prepare import DEFAULT_EPOCHS, open_ended, prepare
from .stages.quantize import quantize_int8
from .stages.recover import recover, selection_loss, train_until_stalled
from .stages.judging import held_out_quality
from .stages.latency_correction import correct_latency, latency_met
from .stages.planner import WidthPlan, plan_widths
from .stages.rounds import RoundsHopeless, prune_in_rounds
from .stages.verify import verify, verify_quantized
from .torchview.distributed import on_main
from .torchview.finetune import epoch_steps
from .torchview.view import TorchView

__all__ = ["PruneOptions", "PruneResult", "prune"]

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
    options: PruneOptions | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> PruneResult:
    """Prune ``model`` to at most ``target_flops`` of its FLOPs (default 0.3) and, with
    ``target_latency``, to at most that share of its measured latency; returns the verified model
    and its report.

    ``data`` is an image folder, an .npy/.npz file, a ``Dataset`` or an array of model inputs;
    images are read as they are needed. The settings are ``options`` (a ``PruneOptions``, typed)
    and/or ``overrides`` (its fields as keywords, which win); both are checked by ``resolve``.
    ``progress(stage, done, total)`` is called as long steps advance; stages whose name ends in
    "fine-tuning" count images. Nothing is written to disk except the latency cache (see
    ``latency.cache_dir``) and, with ``checkpoint_dir``, a checkpoint after each finished stage.
    Under torchrun every process calls this; each returns the same model.
    """
    o = _settle(target_flops, options, overrides)
    check_paths(model, data, o.labels, o.val_data, o.unlabeled)
    clock = StageClock()
    torch.manual_seed(o.seed)
    with clock("prepare"):
        run = prepare(load(model, o.input_size), data, o, progress or (lambda stage, done, total: None))
    try:
        return _prune_prepared(run, clock)
    finally:
        run.teacher.close()  # its cache, if it made one


def _settle(target_flops: float | None, options: PruneOptions | None, overrides: dict[str, Any]) -> PruneOptions:
    """One checked ``PruneOptions`` from the three ways ``prune`` takes them."""
    values = {f.name: getattr(options, f.name) for f in fields(PruneOptions)} if options else {}
    values |= overrides  # (``target_flops`` is prune's own parameter: never among the overrides)
    given = values.pop("target_flops", None)
    return resolve(target_flops if target_flops is not None else given, values)


def _prune_prepared(run: Run, clock: StageClock) -> PruneResult:
    o = run.options
    resumed = run.checkpoints.load() if o.resume else None
    if resumed is None and run.checkpoints.exists():
        log.warning("starting over: the checkpoint of an earlier run in %s will be replaced (--resume continues it)",
                    run.checkpoints.folder)
    analysis = run.model.work_groups
    with clock("plan widths"):
        plan = on_main(lambda: plan_widths(run, analysis))
    stopped: RoundsHopeless | None = None
    try:
        view, freed, records, budget, blocks = _resume_or_start(run, plan, analysis, resumed, clock)
    except RoundsHopeless as stop:  # judged and reported as it stands, without the final fine-tuning
        stopped, view, records, budget = stop, stop.view, stop.records, None
        freed, blocks = stop.freed, stop.blocks
    recovery = None
    if stopped is None and (resumed is None or resumed.stage < Checkpoints.FINAL):
        view, recovery = _final_finetune(run, view, records, freed, clock, budget, blocks)

    with clock("verify"):
        final = fold_inserted(view.model)  # BatchNorm added for fine-tuning goes back into the convs
        written = restore_signature(final, run.model.original.signature)  # the user's signature
        user = run.model.original
        max_err = verify(written, view.imported.module, user.image.name, run.data.val, user.fixed_batch,
                         user.output_axes, batch=run.training.settings.at_once, torch_model=final)
        final_groups = analyze_groups(LoadedModel(final, run.model.original.image, None))
        if not o.budget_goal and stopped is None:
            _check_reached(o, plan, final_groups)
    with clock("measure quality"):
        quality = held_out_quality(run, final, intervals=True)
        if quality.drop.unresolved_note():
            log.warning(quality.drop.unresolved_note())
    int8 = int8_quality = None
    if o.quantize:
        with clock("quantize"):
            int8 = on_main(lambda: quantize_int8(final, run.model.original.image.name, run.data.calibration))
            # the same contract as the float model's before it is judged or written
            user = run.model.original
            verify_quantized(restore_signature(int8, user.signature), written, user.image.name, run.data.val,
                             user.fixed_batch)
            int8_quality = held_out_quality(run, int8, intervals=True)
    pruned_anything = final_groups.cost.flops < plan.base.flops
    candidates = [("original", run.model.original.model)]
    if pruned_anything or int8 is None:
        candidates.append(("pruned", final))
    if int8 is not None:
        candidates.append(("pruned + INT8" if pruned_anything else "INT8", int8))
    with clock("measure latency"):
        timing = on_main(lambda: time_side_by_side(run, plan, candidates, final_groups))
    stages = _stages(run, plan, final_groups, candidates, {"pruned": quality, "pruned + INT8": int8_quality,
                                             "INT8": int8_quality}, timing)
    delivered = int8_quality or quality
    report = replace(build_report(run, plan, analysis, final_groups, freed, records, delivered, max_err, timing, clock,
                                  resumed, budget, stages), recovery=recovery, blocks=blocks)
    if stopped is not None and not quality.drop.within:
        raise QualityBudgetExceeded(f"no model was written (the report was): {stopped.message}", report)
    if not quality.drop.within:
        raise QualityBudgetExceeded(quality.drop.message(), report)
    if int8_quality is not None and not int8_quality.drop.within:
        raise QualityBudgetExceeded(
            f"the INT8 model loses {int8_quality.drop.points:.1f} points of "
            f"{int8_quality.drop.metric.replace('_', ' ')} on the held-out data (the float pruned model "
            f"{quality.drop.points:.1f}), more than --max-drop {o.max_drop:g}; no model was written (the report was) "
            "— leave out --quantize, prune less, or allow more with --max-drop", report)
    return PruneResult(restore_signature(int8, run.model.original.signature) if int8 is not None else written, report)


def _stages(run: Run, plan: WidthPlan, final: GroupAnalysis, candidates: list[tuple[str, onnx.ModelProto]],
            qualities: dict[str, Quality | None], timing: dict[str, Any] | None) -> tuple[Stage, ...]:
    """Each model the run compares, measured alike: FLOPs, params, bytes, quality, latency. INT8
    runs the float model's operations, so it counts its FLOPs and params."""
    timings = {t["name"]: t for t in timing["timings"]} if timing else {}
    stages = []
    for name, model in candidates:
        cost = plan.base if name in ("original", "INT8") else final.cost
        quality = held_out_quality(run, None) if name == "original" else qualities.get(name)
        if quality is None:
            raise RuntimeError(f"no held-out quality was measured for the {name} model")
        t = timings.get(name)
        stages.append(Stage(name, cost.flops, cost.params, model.ByteSize(), quality.after, quality.drop.points,
                            t["median_ms"] if t else None, t["speedup"] if t else None))
    return tuple(stages)


def _resume_or_start(run: Run, plan: WidthPlan, analysis: GroupAnalysis, resumed: Checkpoint | None,
                     clock: StageClock
                     ) -> tuple[TorchView, LosslessResult, list[RoundRecord], Budget | None, dict | None]:
    """Whole blocks (--structure), the lossless pass and the rounds, or what of them a checkpoint
    holds; and what the blocks removed (None: width only)."""
    o, saves = run.options, run.checkpoints
    if resumed is not None:
        view, freed, records = TorchView.of(resumed.model, run.model.work.image), resumed.freed, list(resumed.records)
        blocks = resumed.blocks
    else:
        start, blocks = None, None
        if o.structure != "width":
            with clock("blocks"):
                depth = on_main(lambda: remove_blocks_first(run, plan, analysis))
            start, analysis, blocks = depth.model, depth.analysis, depth.as_dict(plan.base.flops)
        with clock("lossless pass"):
            view, freed = remove_lossless(run, plan.steps(analysis), analysis, start)
        records = []
        saves.save(0, "lossless pass", view.model, records, freed, blocks=blocks)
    reached = resumed.reached if resumed is not None else True
    budget = resumed.budget if resumed is not None else None
    if reached and (resumed is None or resumed.stage < Checkpoints.CORRECTED):
        with clock("rounds"):
            def saved(r: int, label: str, done: TorchView, so_far: list[RoundRecord], ok: bool) -> None:
                saves.save(r, label, done.model, so_far, freed, ok, blocks=blocks)

            after = resumed.stage if resumed else 0
            if o.budget_goal:
                view, records, budget = prune_within_budget(run, plan, view, records, after, saved)
            else:
                try:
                    view, records, reached = prune_in_rounds(run, plan, view, records, after=after, saved=saved)
                except RoundsHopeless as stop:
                    stop.freed, stop.blocks = freed, blocks  # what was removed before the rounds, for the report
                    raise
        if o.target_latency is not None and reached:
            if o.latency_table:
                log.info("the latency target is held by the tables of %s: the device they were measured on is not "
                         "this one, so no correction by measuring here", plan.timed()[0].device)
            else:
                with clock("latency correction"):
                    view = correct_latency(run, plan, view, records)
        saves.save(Checkpoints.CORRECTED, "rounds", view.model, records, freed, reached, budget, blocks)
    return view, freed, records, budget, blocks


def _final_finetune(run: Run, view: TorchView, records: list[RoundRecord], freed: LosslessResult,
                    clock: StageClock, budget: Budget | None = None, blocks: dict | None = None
                    ) -> tuple[TorchView, Recovery | None]:
    """The longer fine-tuning at the end, unless nothing was pruned. With the budget as the goal
    it is kept only where it does not take the model out of the budget the rounds kept it in."""
    o = run.options
    if not any(r.kept for r in records) and (budget is not None or o.flops_share >= 1):
        log.info("nothing was pruned: no final fine-tuning")
        run.checkpoints.save(Checkpoints.FINAL, "final fine-tuning", view.model, records, freed, budget=budget, blocks=blocks)
        return view, None
    before, recovery = view.model, None
    epoch = epoch_steps(len(run.data.train), o.batch_size)
    with clock("final fine-tuning"):
        if open_ended(o):
            selection, reference, _ = run.judge.held.part(judging=True)
            judge = lambda model: selection_loss(model, run.model.work.image.name, selection, reference,  # noqa: E731
                                                 run.training.settings.output_kinds)
            log.info("final fine-tuning: epochs of %d steps of %d images until the loss against the original on %d "
                     "held-out images stops improving", epoch, o.batch_size, len(selection))
            view, recovery = train_until_stalled(view, run.data.train, run.teacher, epoch, run.training.settings,
                                                 (o.seed, 0), judge, len(selection), o.time_budget, run.progress)
            log.info("final fine-tuning: stopped after %d epochs (%s, %.0f s); kept epoch %d", recovery.epochs,
                     recovery.stopped, recovery.seconds, recovery.kept_epoch)
            final_steps = recovery.steps
        else:
            final_steps = ceil((DEFAULT_EPOCHS if o.epochs is None else o.epochs) * epoch)
            log.info("final fine-tuning: %d steps of %d images", final_steps, o.batch_size)
            total = final_steps * o.batch_size
            recover(view, run.data.train, run.teacher, final_steps, run.training.settings, (o.seed, 0), o.recover,
                    o.dsd_sparsity, lambda images: run.progress("final fine-tuning", images, total))
    if budget is not None and final_steps:
        drop = held_out_quality(run, view.model, judging=True).drop
        if not drop.within:
            log.warning("the final fine-tuning took the model to %.1f points lost, beyond --max-drop %g: keeping the "
                        "model of round %d as it was", drop.points, o.max_drop, budget.kept_round)
            view = TorchView.of(before, view.image)
    run.checkpoints.save(Checkpoints.FINAL, "final fine-tuning", view.model, records, freed, budget=budget, blocks=blocks)
    return view, recovery


def _labelled(train: Dataset) -> int | None:
    """How many training images are labelled, where only some are."""
    if train.labels is None:
        return None
    known = int((train.labels != UNLABELLED).sum())
    return known if known < len(train.labels) else None


def _check_reached(o: PruneOptions, plan: WidthPlan, final: GroupAnalysis) -> None:
    if final.cost.flops > plan.target_flops:
        blocked = ", ".join(sorted({r for g in final.groups for r in g.blocked})[:2])
        raise OnnxpruneError(
            f"the target of {100 * o.flops_share:g}% FLOPs cannot be reached: the best is "
            f"{final.cost.flops / plan.base.flops:.1%} (every group is at its floor or blocked: {blocked}); "
            "raise --target-flops or lower --min-channels"
        )


def time_side_by_side(run: Run, plan: WidthPlan, candidates: list[tuple[str, onnx.ModelProto]],
                    final_groups: GroupAnalysis) -> dict[str, Any] | None:
    """The original and what the run made (pruned, INT8) timed side by side in onnxruntime (a
    latency target is always confirmed by measuring), with the target's verdict."""
    o = run.options
    if not o.bench and o.target_latency is None:
        return None
    log.info("timing %s in onnxruntime (%d interleaved runs)", ", ".join(n for n, _ in candidates), o.bench_runs)
    result = benchmark(candidates, run.model.original.image, device=run.hardware.ort_device,
                       threads=run.hardware.threads, runs=o.bench_runs)
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
                 clock: StageClock, resumed: Checkpoint | None = None, budget: Budget | None = None,
                 stages: tuple[Stage, ...] = ()) -> Report:
    o, base, after = run.options, plan.base, final.cost
    train, val, settings = run.data.train, run.data.val, run.training.settings
    first = RoundRecord(0, base.flops, base.params, 1.0, None,
                        1.0 if is_classifier_output(run.judge.held.reference[0].shape) else None,
                        1.0 if plan.latency else None, 0.0)
    hardware = None
    if plan.latency:
        choice, tables = plan.step_choice, plan.latency
        hardware = HardwareAware(tables.device, tables.threads, plan.round_to, len(tables.layers),
                                 tables.original_ms, plan.predicted_fraction(final), o.latency_table,
                                 tuple(asdict(c) for c in choice.candidates) if choice else (),
                                 choice.reason if choice else None)
    return Report(
        model=str(run.model.original.source) if run.model.original.source else None,
        settings=o.as_dict() | {"device": run.hardware.device},
        criterion=o.criterion,
        flops=Flops(base.flops, after.flops, after.flops / base.flops, plan.target_flops),
        macs=Macs(base.macs, after.macs),
        params=Params(base.params, after.params, after.params / max(base.params, 1)),
        widths=Widths(_widths(original), _widths(final, original)),
        lossless=LosslessCounts(freed.dead, freed.folded, freed.constant_kept),
        quality=quality,
        batchnorm_inserted=sum(is_inserted(n) for n in run.model.work.model.graph.node),
        fixed_batch=run.model.original.fixed_batch,
        verification=Verification(max_err, len(run.data.val)),
        latency=timing,
        hardware_aware=hardware,
        trajectory=(first, *records),
        data=DataSizes(len(train), len(val), o.labels, len(run.data.calibration), train.kind, settings.augment,
                       small_data_note(len(train), len(val), o.drop_limit), _labelled(train)),
        external_data=run.model.original.external_data,
        time_s=round(clock.total(), 2),
        runtime=Runtime(run.hardware.device, run.hardware.ort_device, settings.precision, settings.channels_last,
                        run.hardware.ranks.world, settings.workers),
        stage_times_s=clock.as_dict(),
        resumed_after=None if resumed is None else resumed.name,
        budget=budget,
        stages=stages,
    )


def _widths(analysis: GroupAnalysis, named_as: GroupAnalysis | None = None) -> dict[str, int]:
    """Channels per group, named by its producers; with ``named_as``, by the name of the group there
    that shares a producer (a removed block takes its last conv out of the skip's group, and the
    skip is still the group it was)."""
    def name(producers) -> str:
        return " + ".join(producers)

    earlier = {p: name(g.producers) for g in named_as.groups for p in g.producers} if named_as else {}
    return {next((earlier[p] for p in g.producers if p in earlier), name(g.producers)): g.channels
            for g in analysis.groups if g.producers}
