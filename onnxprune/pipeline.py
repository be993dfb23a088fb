"""The pruning job, end to end: the one function the CLI and the Python API call.

    load → data and teacher (prepare) → plan widths → the passes: [blocks] → lossless pass →
    rounds of {score → choose → slice → fine-tune} → [latency correction] → final fine-tuning →
    verify → measure quality → [INT8] → measure latency → report

The ONNX model is the source of truth: each round slices it with the one slicer and re-imports
the torch view, whose fine-tuned weights are written back into the initializers. Every pass is
a function of the run's frozen context (``Run``), the plan and the state the passes before it
left; ``stages.passes.PassManager`` runs them, checks what each needs and ensures, and
checkpoints and resumes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from .data.sources import Dataset
from .errors import QualityBudgetExceeded
from .graph.load import load
from .graph.output_axes import restore_signature
from .options import PruneOptions, check_paths, resolve
from .report import Report
from .stages.budget import BUDGET_ROUNDS
from .stages.context import Progress, Run, StageClock
from .stages.deliver import MEASURE_LATENCY, MEASURE_QUALITY, QUANTIZE, VERIFY, build_report
from .stages.depth import BLOCKS
from .stages.latency_correction import LATENCY_CORRECTION
from .stages.lossless import LOSSLESS
from .stages.passes import PassManager, PassState
from .stages.planner import plan_widths
from .stages.prepare import prepare
from .stages.recover import FINAL_FINETUNE
from .stages.rounds import ROUNDS
from .torchview.distributed import on_main

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


# the stages in the order they run: each says what it needs and ensures (``stages.passes``)
PASSES = (BLOCKS, LOSSLESS, ROUNDS, BUDGET_ROUNDS, LATENCY_CORRECTION, FINAL_FINETUNE, VERIFY, MEASURE_QUALITY,
          QUANTIZE, MEASURE_LATENCY)


def _prune_prepared(run: Run, clock: StageClock) -> PruneResult:
    o = run.options
    resumed = run.checkpoints.load() if o.resume else None
    if resumed is None and run.checkpoints.exists():
        log.warning("starting over: the checkpoint of an earlier run in %s will be replaced (--resume continues it)",
                    run.checkpoints.folder)
    with clock("plan widths"):
        plan = on_main(lambda: plan_widths(run, run.model.work_groups))
    state = PassManager(PASSES, run, plan, clock).run_all(resumed)
    report = build_report(run, plan, state, clock, resumed)
    _refuse_beyond_budget(o, state, report)
    assert state.written is not None
    written = restore_signature(state.int8, run.model.original.signature) if state.int8 is not None else state.written
    return PruneResult(written, report)


def _refuse_beyond_budget(o: PruneOptions, state: PassState, report: Report) -> None:
    """Nothing is written where the model delivered loses more than --max-drop (the report is)."""
    quality, int8_quality = state.quality, state.int8_quality
    assert quality is not None
    if state.stopped is not None and not quality.drop.within:
        raise QualityBudgetExceeded(f"no model was written (the report was): {state.stopped}", report)
    if not quality.drop.within:
        raise QualityBudgetExceeded(quality.drop.message(), report)
    if int8_quality is not None and not int8_quality.drop.within:
        raise QualityBudgetExceeded(
            f"the INT8 model loses {int8_quality.drop.points:.1f} points of "
            f"{int8_quality.drop.metric.replace('_', ' ')} on the held-out data (the float pruned model "
            f"{quality.drop.points:.1f}), more than --max-drop {o.max_drop:g}; no model was written (the report was) "
            "— leave out --quantize, prune less, or allow more with --max-drop", report)
