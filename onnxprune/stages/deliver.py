"""What a run delivers, as the last passes: the pruned model verified against its torch view,
judged on the held-out share, quantized where asked (and verified again), and timed side by side
with the original in onnxruntime; and its report, built from the run and what the passes left
(``build_report``)."""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from typing import Any

import onnx

from ..data.sources import UNLABELLED, Dataset, small_data_note
from ..errors import OnnxpruneError
from ..graph.batchnorm import fold_inserted
from ..graph.groups import GroupAnalysis, analyze_groups
from ..graph.load import LoadedModel
from ..graph.nodes import is_inserted
from ..graph.output_axes import restore_signature
from ..graph.output_shapes import is_classifier_output
from ..measure.bench import benchmark
from ..options import PruneOptions
from ..report import (
    DataSizes, Flops, HardwareAware, LosslessCounts, Macs, Params, Quality, Report, RoundRecord, Runtime, Stage,
    Verification, Widths,
)
from ..torchview.distributed import on_main
from .checkpoint import Checkpoint
from .context import Run, StageClock
from .latency_correction import latency_met
from .passes import Pass, PassState, Steps
from .planner import WidthPlan
from .quantize import quantize_int8
from .verify import verify, verify_quantized

__all__ = ["VERIFY", "MEASURE_QUALITY", "QUANTIZE", "MEASURE_LATENCY", "build_report", "candidates",
           "time_side_by_side"]

log = logging.getLogger(__name__)


def _verify(run: Run, plan: WidthPlan, state: PassState, steps: Steps) -> PassState:  # noqa: ARG001
    view, user = state.view, run.model.original
    assert view is not None  # (required)
    final = fold_inserted(view.model)  # BatchNorm added for fine-tuning goes back into the convs
    written = restore_signature(final, user.signature)  # the user's signature
    max_error = verify(written, view.imported.module, user.image.name, run.data.val, user.fixed_batch,
                       user.output_axes, batch=run.training.settings.at_once, torch_model=final)
    final_groups = analyze_groups(LoadedModel(final, user.image, None))
    if not run.options.budget_goal and state.stopped is None:
        _check_reached(run.options, plan, final_groups)
    return replace(state, final=final, written=written, max_error=max_error, final_groups=final_groups)


def _check_reached(o: PruneOptions, plan: WidthPlan, final: GroupAnalysis) -> None:
    if final.cost.flops > plan.target_flops:
        blocked = ", ".join(sorted({r for g in final.groups for r in g.blocked})[:2])
        raise OnnxpruneError(
            f"the target of {100 * o.flops_share:g}% FLOPs cannot be reached: the best is "
            f"{final.cost.flops / plan.base.flops:.1%} (every group is at its floor or blocked: {blocked}); "
            "raise --target-flops or lower --min-channels"
        )


def _measure_quality(run: Run, plan: WidthPlan, state: PassState, steps: Steps) -> PassState:  # noqa: ARG001
    quality = run.judge.quality(state.final, intervals=True)
    if quality.drop.unresolved_note():
        log.warning(quality.drop.unresolved_note())
    return replace(state, quality=quality)


def _quantize(run: Run, plan: WidthPlan, state: PassState, steps: Steps) -> PassState:  # noqa: ARG001
    final, user = state.final, run.model.original
    assert final is not None and state.written is not None  # (required)
    int8 = on_main(lambda: quantize_int8(final, user.image.name, run.data.calibration))
    # the same contract as the float model's before it is judged or written
    verify_quantized(restore_signature(int8, user.signature), state.written, user.image.name, run.data.val,
                     user.fixed_batch)
    return replace(state, int8=int8, int8_quality=run.judge.quality(int8, intervals=True))


def _asked_to_quantize(run: Run, state: PassState) -> bool:  # noqa: ARG001
    return run.options.quantize is not None


def candidates(run: Run, plan: WidthPlan, state: PassState) -> list[tuple[str, onnx.ModelProto]]:
    """The models the run compares, by name: the original, the pruned model (unless only INT8
    changed anything) and the INT8 one."""
    assert state.final is not None and state.final_groups is not None
    pruned_anything = state.final_groups.cost.flops < plan.base.flops
    models = [("original", run.model.original.model)]
    if pruned_anything or state.int8 is None:
        models.append(("pruned", state.final))
    if state.int8 is not None:
        models.append(("pruned + INT8" if pruned_anything else "INT8", state.int8))
    return models


def _measure_latency(run: Run, plan: WidthPlan, state: PassState, steps: Steps) -> PassState:  # noqa: ARG001
    assert state.final_groups is not None  # (required)
    final_groups = state.final_groups
    models = candidates(run, plan, state)
    return replace(state, timing=on_main(lambda: time_side_by_side(run, plan, models, final_groups)))


def time_side_by_side(run: Run, plan: WidthPlan, models: list[tuple[str, onnx.ModelProto]],
                      final_groups: GroupAnalysis) -> dict[str, Any] | None:
    """The original and what the run made (pruned, INT8) timed side by side in onnxruntime (a
    latency target is always confirmed by measuring), with the target's verdict."""
    o = run.options
    if not o.bench and o.target_latency is None:
        return None
    log.info("timing %s in onnxruntime (%d interleaved runs)", ", ".join(n for n, _ in models), o.bench_runs)
    result = benchmark(models, run.model.original.image, device=run.hardware.ort_device,
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


VERIFY = Pass("verify", _verify, requires=("view",), ensures=("final", "written", "max_error", "final_groups"),
              resumable=False)
MEASURE_QUALITY = Pass("measure quality", _measure_quality, requires=("final",), ensures=("quality",),
                       resumable=False)
QUANTIZE = Pass("quantize", _quantize, requires=("final", "written"), ensures=("int8", "int8_quality"),
                applies=_asked_to_quantize, resumable=False)
MEASURE_LATENCY = Pass("measure latency", _measure_latency, requires=("final", "final_groups"),
                       resumable=False)


def build_report(run: Run, plan: WidthPlan, state: PassState, clock: StageClock,
                 resumed: Checkpoint | None = None) -> Report:
    """The report of a run whose passes left ``state`` (verified and judged)."""
    o, base, final = run.options, plan.base, state.final_groups
    if final is None or state.quality is None or state.max_error is None:
        raise RuntimeError("a report is built from a verified, judged run")
    after = final.cost
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
        widths=Widths(_widths(run.model.work_groups), _widths(final, run.model.work_groups)),
        lossless=state.freed or LosslessCounts(),
        quality=state.int8_quality or state.quality,  # what is delivered
        batchnorm_inserted=sum(is_inserted(n) for n in run.model.work.model.graph.node),
        fixed_batch=run.model.original.fixed_batch,
        verification=Verification(state.max_error, len(val)),
        latency=state.timing,
        hardware_aware=hardware,
        trajectory=(first, *state.records),
        data=DataSizes(len(train), len(val), o.labels, len(run.data.calibration), train.kind, settings.augment,
                       small_data_note(len(train), len(val), o.drop_limit), _labelled(train)),
        external_data=run.model.original.external_data,
        time_s=round(clock.total(), 2),
        runtime=Runtime(run.hardware.device, run.hardware.ort_device, settings.precision, settings.channels_last,
                        run.hardware.ranks.world, settings.workers),
        stage_times_s=clock.as_dict(),
        resumed_after=None if resumed is None else resumed.name,
        budget=state.budget,
        stages=_stages(run, plan, state),
        recovery=state.recovery,
        blocks=state.blocks,
    )


def _stages(run: Run, plan: WidthPlan, state: PassState) -> tuple[Stage, ...]:
    """Each model the run compares, measured alike: FLOPs, params, bytes, quality, latency. INT8
    runs the float model's operations, so it counts its FLOPs and params."""
    assert state.final_groups is not None
    timings = {t["name"]: t for t in state.timing["timings"]} if state.timing else {}
    qualities: dict[str, Quality | None] = {"pruned": state.quality, "pruned + INT8": state.int8_quality,
                                            "INT8": state.int8_quality}
    stages = []
    for name, model in candidates(run, plan, state):
        cost = plan.base if name in ("original", "INT8") else state.final_groups.cost
        quality = run.judge.quality(None) if name == "original" else qualities.get(name)
        if quality is None:
            raise RuntimeError(f"no held-out quality was measured for the {name} model")
        t = timings.get(name)
        stages.append(Stage(name, cost.flops, cost.params, model.ByteSize(), quality.after, quality.drop.points,
                            t["median_ms"] if t else None, t["speedup"] if t else None))
    return tuple(stages)


def _labelled(train: Dataset) -> int | None:
    """How many training images are labelled, where only some are."""
    if train.labels is None:
        return None
    known = int((train.labels != UNLABELLED).sum())
    return known if known < len(train.labels) else None


def _widths(analysis: GroupAnalysis, named_as: GroupAnalysis | None = None) -> dict[str, int]:
    """Channels per group, named by its producers; with ``named_as``, by the name of the group there
    that shares a producer (a removed block takes its last conv out of the skip's group, and the
    skip is still the group it was)."""
    def name(producers) -> str:
        return " + ".join(producers)

    earlier = {p: name(g.producers) for g in named_as.groups for p in g.producers} if named_as else {}
    return {next((earlier[p] for p in g.producers if p in earlier), name(g.producers)): g.channels
            for g in analysis.groups if g.producers}
