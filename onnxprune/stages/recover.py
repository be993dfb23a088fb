"""How the final fine-tuning recovers the pruned model: plainly, or dense → sparse → dense (DSD),
for a number of epochs; or, by default, epoch by epoch until the loss against the original on
held-out images stops improving (``train_until_stalled``).

DSD (Han et al. 2017, "DSD: Dense-Sparse-Dense Training for Deep Neural Networks"): train
dense; zero each weight tensor's smallest-magnitude share and train under that mask, so the
remaining weights learn to carry the model; lift the mask and train dense again at a tenth of
the learning rate, so the zeroed weights regrow from zero. The written model is dense: the mask
only shapes training.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from math import ceil

import numpy as np
import onnx
import torch

from ..data.sources import Dataset
from ..graph.runtime import run_batched
from ..options import PruneOptions
from ..report import Recovery
from ..torchview.distributed import on_main
from ..torchview.finetune import OutputKind, TeacherFn, TrainSettings, epoch_steps, loss_for
from ..torchview.view import TorchView
from .context import Run
from .passes import Pass, PassState, Steps
from .planner import WidthPlan

__all__ = ["FINAL_FINETUNE", "DEFAULT_EPOCHS", "MagnitudeMask", "open_ended", "recover", "train_until_stalled",
           "selection_loss"]

log = logging.getLogger(__name__)

DEFAULT_EPOCHS = 10.0  # the final fine-tuning's length where it is not run until it stops improving


def open_ended(o: PruneOptions) -> bool:
    """The final fine-tuning runs epoch by epoch until the held-out loss stops improving."""
    return o.epochs is None and o.recover == "plain"

REDENSE_LR = 0.1  # the last dense phase's learning rate, as a share of --lr (the paper's)


class MagnitudeMask:
    """The smallest ``rate`` of each weight tensor's magnitudes (convolutions and linear layers:
    parameters of rank ≥ 2), zeroed now and after every optimizer step."""

    def __init__(self, module: torch.nn.Module, rate: float) -> None:
        self.masks: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
        for p in module.parameters():
            if p.requires_grad and p.dim() >= 2 and p.numel() > 1:
                k = int(rate * p.numel())
                if k < 1:
                    continue
                cut = p.detach().abs().flatten().kthvalue(k).values
                self.masks.append((p, p.detach().abs() > cut))
        self(module)

    @torch.no_grad()
    def __call__(self, module: torch.nn.Module, loss: torch.Tensor | None = None) -> None:
        for p, keep in self.masks:
            p.mul_(keep.to(p.device))

    @property
    def sparsity(self) -> float:
        total = sum(k.numel() for _, k in self.masks)
        return 1 - sum(int(k.sum()) for _, k in self.masks) / max(total, 1)


def recover(view, data: Dataset, teacher: TeacherFn, steps: int, settings: TrainSettings, seed: tuple,
            method: str, sparsity: float, progress: Callable[[int], None] | None = None) -> None:
    """Fine-tune ``view`` (``session.TorchView``) for ``steps`` steps in all: plainly, or as DSD's
    three phases of about a third each."""
    if method == "plain" or steps < 3:
        view.finetune(data, teacher, steps, settings, seed, progress)
        return
    dense, sparse = steps // 3, steps // 3
    phases = ((dense, settings, False), (sparse, settings, True),
              (steps - dense - sparse, replace(settings, lr=settings.lr * REDENSE_LR), False))
    done = 0
    for k, (n, phase_settings, sparse_phase) in enumerate(phases):
        mask = MagnitudeMask(view.imported.module, sparsity) if sparse_phase else None
        if mask is not None:
            log.info("DSD: sparse phase, %.0f%% of the weights held at zero", 100 * mask.sparsity)
        offset = done * settings.batch_size
        view.finetune(data, teacher, n, phase_settings, (*seed, 3, k),
                      None if progress is None else (lambda images, o=offset: progress(o + images)),
                      after_step=mask)
        done += n


PATIENCE = 8  # epochs without a better held-out loss before training stops
LR_PATIENCE = 2  # the learning rate halves after this many such epochs in a row
MIN_GAIN = 0.005  # a loss this share below the best so far counts as better
MIN_EPOCHS = 10  # the fixed schedule's length: training only ever goes on longer
MAX_EPOCHS = 500
# the default budget: 50 epochs, and 30 minutes whatever they take. Counted in epochs, not in the
# time the first one took, so that the final fine-tuning trains as long on a busy machine as on a
# quiet one (with 25 first epochs' time, the tasks reader lost 14.5 and 18.5 points in two runs of
# one command: results/tasks-2026-12-07.txt, tasks-budget-600.txt). 50, not 25: the reader stopped
# at that budget still improving, and ten minutes took it from 18.5 to 14.5, intervals overlapping
# (tasks-budget-600.txt)
BUDGET_EPOCHS, MAX_BUDGET_S = 50, 1800.0
# the fewest steps an epoch of the open-ended fine-tuning takes (``epoch_steps``' floor there): patience and the learning rate's
# halving count epochs, and with a few dozen images an epoch of the data was one or two steps, so
# the rate halved to nothing and training stopped within twenty steps (the reader with 40 images:
# 24 s in all). Views are drawn afresh every step, so a longer epoch repeats no input. 20 leaves
# epochs of 500 images or more as they are (the README's sample: 24 steps).
OPEN_ENDED_EPOCH_STEPS = 20
SELECTION_BATCH = 64  # held-out items per loss term: per-feature scales need a batch to be read on


def selection_loss(model: onnx.ModelProto, image: str, inputs: Dataset | np.ndarray, teacher: list[np.ndarray],
                   kinds: tuple[OutputKind, ...] = ()) -> float:
    """The fine-tuning loss (``finetune.loss_for``, no labels) of ``model`` against the original's
    outputs ``teacher`` on held-out ``inputs``, in onnxruntime, in batches."""
    outputs = run_batched(model, image, inputs)
    total, n = 0.0, len(outputs[0])
    for start in range(0, n, SELECTION_BATCH):
        part = slice(start, start + SELECTION_BATCH)
        with torch.no_grad():
            loss = loss_for([torch.from_numpy(o[part]).float() for o in outputs],
                            [torch.from_numpy(t[part]).float() for t in teacher], None, 0.0, kinds)
        total += float(loss) * len(outputs[0][part])
    return total / max(n, 1)



def train_until_stalled(view: TorchView, data: Dataset, teacher: TeacherFn, epoch: int, settings: TrainSettings,
                        seed: tuple, judge: Callable[[onnx.ModelProto], float], selection_images: int,
                        budget_s: float | None, progress: Callable[[str, int, int], None] | None = None
                        ) -> tuple[TorchView, Recovery]:
    """Fine-tune ``view`` epoch by epoch (``epoch`` steps each at a constant learning rate) while
    ``judge(model)``, the loss on the ``selection_images`` held-out images, improves; after every ``LR_PATIENCE`` epochs in a
    row that do not improve it, the learning rate halves (a cosine restarted every epoch threw the
    model off each time).
    Stops after ``PATIENCE`` such epochs in a row (not before ``MIN_EPOCHS``), or when the next
    epoch would overrun ``budget_s`` seconds (at ``MAX_EPOCHS``); without ``budget_s``, after
    ``BUDGET_EPOCHS`` epochs or ``MAX_BUDGET_S`` seconds. Returns the view of the best epoch and the record."""
    started = time.perf_counter()
    # judged and timed on the main process alone: every process must take the same decisions
    best_model, best = view.model, on_main(lambda: judge(view.model))
    losses, kept, stalls, lr, done = [best], 0, 0, settings.lr, 0
    most = MAX_EPOCHS if budget_s is not None else BUDGET_EPOCHS
    budget = budget_s if budget_s is not None else MAX_BUDGET_S
    stopped = f"{most} epochs" + ("" if budget_s is not None else ", the default budget (--time-budget sets seconds)")
    for k in range(1, most + 1):
        stage, total = f"epoch {k} of final fine-tuning", epoch * settings.batch_size
        view.finetune(data, teacher, epoch, replace(settings, lr=lr, annealed=False), (*seed, 4, k),
                      None if progress is None else (lambda images, s=stage: progress(s, images, total)))
        done += epoch
        loss, elapsed = on_main(lambda: (judge(view.model), time.perf_counter() - started))
        losses.append(loss)
        if loss < best * (1 - MIN_GAIN):
            best_model, best, kept, stalls = view.model, loss, k, 0
        else:
            stalls += 1
            if stalls % LR_PATIENCE == 0:
                lr /= 2
        log.info("recovery epoch %d: held-out loss %.4g (best %.4g, epoch %d)", k, loss, best, kept)
        if k >= MIN_EPOCHS and stalls >= PATIENCE:
            stopped = f"no better held-out loss in {PATIENCE} epochs"
            break
        if elapsed * (k + 1) / k > budget:
            stopped = f"the time budget of {budget:.0f} s"
            break
    if best_model is not view.model:
        view = TorchView.of(best_model, view.image, analysis=view.analysis)
    return view, Recovery(len(losses) - 1, done, kept, stopped, tuple(losses), selection_images, float(budget),
                          time.perf_counter() - started)


def _final_finetune(run: Run, plan: WidthPlan, state: PassState, steps: Steps) -> PassState:  # noqa: ARG001
    o, view = run.options, state.view
    assert view is not None  # (required)
    before, recovery = view.model, None
    if open_ended(o):
        epoch = epoch_steps(len(run.data.train), o.batch_size, floor=OPEN_ENDED_EPOCH_STEPS)
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
        epoch = epoch_steps(len(run.data.train), o.batch_size)
        final_steps = ceil((DEFAULT_EPOCHS if o.epochs is None else o.epochs) * epoch)
        log.info("final fine-tuning: %d steps of %d images", final_steps, o.batch_size)
        total = final_steps * o.batch_size
        recover(view, run.data.train, run.teacher, final_steps, run.training.settings, (o.seed, 0), o.recover,
                o.dsd_sparsity, lambda images: run.progress("final fine-tuning", images, total))
    if state.budget is not None and final_steps:
        drop = run.judge.quality(view.model, judging=True).drop
        if not drop.within:
            log.warning("the final fine-tuning took the model to %.1f points lost, beyond --max-drop %g: keeping the "
                        "model of round %d as it was", drop.points, o.max_drop, state.budget.kept_round)
            view = TorchView.of(before, view.image)
    return replace(state, view=view, recovery=recovery)


def _anything_to_recover(run: Run, state: PassState) -> bool:
    """Not where the rounds gave up (judged as they stand), nor where nothing was pruned."""
    if state.stopped is not None:
        return False
    if not any(r.kept for r in state.records) and (state.budget is not None or run.options.flops_share >= 1):
        log.info("nothing was pruned: no final fine-tuning")
        return False
    return True


FINAL_FINETUNE = Pass("final fine-tuning", _final_finetune, requires=("view",), ensures=("view",),
                      applies=_anything_to_recover)
