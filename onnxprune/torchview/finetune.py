"""Fine-tune the torch view of a pruned model: distillation from the original.

Classifier outputs (rank 2, several classes) use KL divergence to the teacher's softmax (or to
its own probabilities where the model ends in Softmax), plus cross-entropy when labels are given;
other outputs use MSE scaled by the teacher's variance. The teacher (the original model in torch)
runs on each batch as it comes, on the same augmented views (``augment.py``), so nothing of the
size of the data set is held: batches stream from ``loader.py``'s workers.
BatchNorm layers train (batch statistics, running statistics follow the pruned network, which
is what lets a pruned model recover), and their running statistics are estimated afresh, with the
final weights, on fresh views when training ends; dropout stays off so fine-tuning is deterministic.
On CUDA the loop runs in bfloat16 autocast with channels-last inputs where the GPU supports
them (``TrainSettings``); under torchrun the module is wrapped in DistributedDataParallel.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from math import ceil

import numpy as np
import torch
import torch.nn.functional as F

from ..data.sources import UNLABELLED, Dataset
from ..errors import OnnxpruneError, first_line
from ..graph.output_shapes import feature_axis, is_classifier_output
from .loader import training_loader

__all__ = ["TrainSettings", "Targets", "MixedLabels", "Labels", "TeacherFn", "OutputKind", "output_kind", "loss_for", "finetune", "feature_mse", "is_distribution",
           "log_probabilities", "precision_for", "micro_batches", "epoch_steps", "MIN_EPOCH_STEPS",
           "recalibrate_batchnorm"]

log = logging.getLogger(__name__)

# (inputs, their training positions) → the original's outputs (``teacher.Teacher``)
TeacherFn = Callable[[torch.Tensor, torch.Tensor | None], list[torch.Tensor]]
OutputKind = tuple[str, int]  # ("classes", class axis), ("embedding", vector axis) or ("features", -1)


@dataclass(frozen=True)
class TrainSettings:
    lr: float = 1e-3
    batch_size: int = 32  # the global batch: split across processes under torchrun
    micro_batch: int = 0  # samples torch holds at once (memory.py); 0: the whole batch
    device: str = "cpu"
    weight_decay: float = 0.0
    label_weight: float = 1.0  # cross-entropy weight next to distillation, when labels exist
    augment: str = "none"  # an ``augment.MODES`` entry other than auto
    workers: int = 0  # DataLoader worker processes
    precision: str = "fp32"  # "bf16": autocast (CUDA by default, see precision_for)
    channels_last: bool = False  # NCHW inputs and weights in channels-last memory (CUDA)
    feature_hints: bool = False  # also match the original's stage-end feature maps (hints.py)
    output_kinds: tuple[OutputKind, ...] = ()  # how each output is distilled (``output_kind``)
    annealed: bool = True  # the learning rate follows a cosine to zero over the steps; else it stays
    rank: int = 0
    world: int = 1

    @property
    def at_once(self) -> int:
        """Samples one torch forward takes: the micro-batch, else the batch."""
        return self.micro_batch or self.batch_size


def precision_for(requested: str, device: str) -> str:
    """``auto``: bfloat16 autocast on a CUDA GPU that supports it, float32 elsewhere (a CPU
    gains nothing from bf16 autocast without AMX, and loses accuracy)."""
    if requested != "auto":
        return requested
    return "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32"


@dataclass(frozen=True)
class Targets:
    """What scoring compares with on the calibration inputs: the teacher's outputs, and labels."""

    teacher: list[np.ndarray]  # one array per graph output, aligned with the inputs
    labels: np.ndarray | None = None
    kinds: tuple[OutputKind, ...] = ()  # how each output is compared (``output_kind``)


def output_kind(i: int, shape: tuple[int, ...], kinds: tuple[OutputKind, ...] = ()) -> OutputKind:
    """How output ``i`` is distilled: as its role says (``kinds``, from ``measure.roles``), else by
    its shape (a (batch, classes) output is a classifier's)."""
    if i < len(kinds):
        return kinds[i]
    return ("classes", 1) if is_classifier_output(shape) else ("features", -1)


@dataclass(frozen=True)
class MixedLabels:
    """The labels of a mixed batch (``mixed_views``): row i is ``weight[i]`` of the image labelled
    ``first[i]`` and the rest of the one labelled ``second[i]``, so its cross-entropy is the two
    labels' by those weights (mixup, Zhang et al. 2018)."""

    first: torch.Tensor
    second: torch.Tensor
    weight: torch.Tensor

    def __getitem__(self, part: slice) -> MixedLabels:
        return MixedLabels(self.first[part], self.second[part], self.weight[part])

    def to(self, device, non_blocking: bool = False) -> MixedLabels:
        return MixedLabels(*(t.to(device, non_blocking=non_blocking) for t in (self.first, self.second, self.weight)))


Labels = torch.Tensor | MixedLabels


def loss_for(
    outputs: list[torch.Tensor], teacher: list[torch.Tensor], labels: Labels | None, label_weight: float,
    kinds: tuple[OutputKind, ...] = (),
) -> torch.Tensor:
    """Distillation per output by its kind: KL divergence over the classes (at every position of a
    sequence), one minus the cosine for an embedding, per-feature MSE otherwise; plus cross-entropy
    with labels (mixed ones by their weights) on a first output of (batch, classes)."""
    total = outputs[0].new_zeros(())
    for i, (s, t) in enumerate(zip(outputs, teacher)):
        kind, axis = output_kind(i, tuple(s.shape), kinds)
        if kind == "classes":
            log_s, log_t = log_probabilities(s, t, axis), log_probabilities(t, t, axis)
            # per position, averaged over the batch and the positions ("batchmean" for a classifier)
            total = total + (log_t.exp() * (log_t - log_s)).sum(axis).mean()
            if labels is not None and i == 0 and s.dim() == 2:
                total = total + label_weight * labelled_nll(log_s, labels)
        elif kind == "embedding":
            total = total + (1 - F.cosine_similarity(s, t, dim=axis, eps=1e-12)).mean()
        else:
            total = total + feature_mse(s, t)
    return total


def labelled_nll(log_probs: torch.Tensor, labels: Labels) -> torch.Tensor:
    """Cross-entropy over the labelled rows (UNLABELLED ones are skipped), summed and divided by
    the whole batch: a few labels weigh as few, none weigh nothing, and no step waits on the GPU
    to learn how many there were. A mixed row counts each of its labels that exists by its share."""
    if isinstance(labels, MixedLabels):
        first = F.nll_loss(log_probs, labels.first, ignore_index=UNLABELLED, reduction="none")
        second = F.nll_loss(log_probs, labels.second, ignore_index=UNLABELLED, reduction="none")
        return (labels.weight * first + (1 - labels.weight) * second).sum() / len(log_probs)
    return F.nll_loss(log_probs, labels, ignore_index=UNLABELLED, reduction="sum") / len(labels)


def is_distribution(t: torch.Tensor, axis: int = 1) -> bool:
    """Values that are already probabilities along ``axis``: the model ends in Softmax (Keras
    applications do)."""
    return bool((t >= 0).all()) and bool(torch.allclose(t.sum(axis), torch.ones_like(t.sum(axis)), atol=1e-3))


def log_probabilities(x: torch.Tensor, teacher: torch.Tensor, axis: int = 1) -> torch.Tensor:
    """Log-probabilities of a classifier output along ``axis``: log-softmax of logits (or of
    log-probabilities, which it leaves as they are), or the log of a softmax the model computes
    itself (judged on the teacher, so student and teacher are read alike; log-softmax of
    probabilities would flatten every distribution towards uniform)."""
    if is_distribution(teacher, axis):
        return x.clamp_min(1e-12).log()
    return F.log_softmax(x, axis)


def feature_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """MSE per feature (``metrics.feature_axis``) over the teacher's variance of that feature,
    averaged: a detector's class scores weigh as much as its box coordinates, whose spread over
    the anchor grid would otherwise make every other error look like zero. A feature nearly
    constant in the batch is weighed against a hundredth of the median feature's variance."""
    axis = feature_axis(tuple(teacher.shape)) if teacher.dim() >= 2 else 0
    if teacher.dim() < 2:
        return F.mse_loss(student, teacher) / teacher.var(unbiased=False).clamp_min(1e-8)
    dims = [d for d in range(teacher.dim()) if d != axis]
    error = (student - teacher).pow(2).mean(dims)
    spread = teacher.var(dims, unbiased=False)
    return (error / (spread + 1e-2 * spread.median() + 1e-8)).mean()


def finetune(
    module: torch.nn.Module,
    data: Dataset,
    teacher: TeacherFn,
    steps: int,
    settings: TrainSettings,
    run: Callable[[torch.nn.Module, torch.Tensor], list[torch.Tensor]],
    seed=0,
    progress: Callable[[int], None] | None = None,
    hints=None,
    after_step: Callable[[torch.nn.Module, torch.Tensor], None] | None = None,
) -> list[float]:
    """Train the module's trainable parameters in place for ``steps`` steps of the global batch,
    drawn from ``seed``; returns the losses. ``progress(images)`` counts images done (all
    processes). ``hints`` (``hints.FeatureHints``) adds the feature-map term; its projections
    are fitted on the first batch and trained alongside. ``after_step(module, loss)`` runs after
    every optimizer step (DSD's sparsity mask, ``recover.py``; the channel bandit, ``bandit.py``)."""
    if steps <= 0:
        return []
    device = torch.device(settings.device)
    module.to(device)
    if settings.channels_last:
        module.to(memory_format=torch.channels_last)
    loader = training_loader(data, settings.batch_size, steps, seed, settings.augment, settings.workers,
                             settings.device, settings.rank, settings.world)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=settings.precision == "bf16")
    batches = iter(loader)
    first = next(batches)
    if hints is not None:
        _fit_hints(module, hints, first, teacher, run, settings, device)
    _train_mode(module)
    params = [p for p in module.parameters() if p.requires_grad]
    if hints is not None:
        params += hints.parameters()
    optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps) if settings.annealed else None
    trained = module
    if settings.world > 1:
        trained = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index or 0] if device.type == "cuda" else None)
    losses: list[torch.Tensor] = []
    with_labels = data.labels is not None
    micro = settings.micro_batch
    for step, (x, labels, positions) in enumerate(itertools.chain([first], batches)):
        x, y = _batch_views(x, labels if with_labels else None, step, seed, settings, device)
        while True:
            try:
                loss = _accumulate(trained, x, y, positions, micro, teacher, run, settings, autocast, hints)
                break
            except (torch.OutOfMemoryError, RuntimeError) as err:
                if not _out_of_memory(err):
                    raise
                micro = _halved(micro or len(x), err)
        optimizer.step()
        if after_step is not None:
            after_step(module, loss)
        if schedule is not None:
            schedule.step()
        losses.append(loss)  # no .item() here: on a GPU it would wait for every step
        if progress:
            progress(min((step + 1) * settings.batch_size, steps * settings.batch_size))
    recalibrate_batchnorm(module, data, settings, run, seed)
    module.to("cpu")
    if settings.channels_last:
        module.to(memory_format=torch.contiguous_format)
    module.eval()
    return torch.stack(losses).float().cpu().tolist()


JITTER = 0.2  # contrast gains within 1 ± this, brightness offsets within ± this (of the inputs' spread)
NOISE = 0.05  # Gaussian noise, of the inputs' spread


def mixed_views(x: torch.Tensor, generator: torch.Generator,
                labels: torch.Tensor | None = None) -> tuple[torch.Tensor, MixedLabels | None]:
    """``augment``'s mix on a batch: each input's contrast and brightness jittered and a little noise
    added (all in units of the batch's spread, so preprocessing does not matter), then each mixed
    with another input of the batch by a weight drawn uniformly (mixup). The teacher is run on the
    result; ``labels``, where given, follow as ``MixedLabels``."""
    n = len(x)
    shape = (n,) + (1,) * (x.dim() - 1)
    spread = x.std().clamp_min(1e-6)
    mean = x.mean()
    gain = 1 + JITTER * (2 * torch.rand(shape, generator=generator) - 1)
    offset = JITTER * spread * (2 * torch.rand(shape, generator=generator) - 1)
    x = (x - mean) * gain + mean + offset + NOISE * spread * torch.randn(x.shape, generator=generator)
    weight = torch.rand(shape, generator=generator)
    partner = torch.randperm(n, generator=generator)
    mixed = weight * x + (1 - weight) * x[partner]
    if labels is None:
        return mixed, None
    return mixed, MixedLabels(labels, labels[partner], weight.flatten())


def _step_seed(seed, step: int) -> int:
    """One integer seed per (run seed, step), the same in every process."""
    parts = list(seed) if isinstance(seed, (tuple, list)) else [seed]
    return int(np.random.default_rng([*parts, step]).integers(2**62))


def _accumulate(trained, x, y, positions, micro: int, teacher: TeacherFn, run, settings: TrainSettings,
                autocast, hints=None) -> torch.Tensor:
    """One step's gradients, accumulated over micro-batches (the step is the batch's; under
    torchrun only the last backward all-reduces); returns the batch's loss."""
    for p in trained.parameters():
        p.grad = None
    loss = x.new_zeros((), dtype=torch.float32)
    parts = micro_batches(len(x), micro)
    for k, part in enumerate(parts):
        sync = trained.no_sync() if settings.world > 1 and k < len(parts) - 1 else nullcontext()
        with torch.no_grad(), autocast:
            targets = [t.float() for t in teacher(x[part], positions[part] if settings.augment == "none" else None)]
        with sync:
            with autocast:
                outputs = run(trained, x[part])
            share = loss_for([o.float() for o in outputs], targets, None if y is None else y[part],
                             settings.label_weight, settings.output_kinds)
            if hints is not None:
                share = share + hints.loss()
            share = share * ((part.stop - part.start) / len(x))
            share.backward()
        loss += share.detach()
    return loss


def _fit_hints(module, hints, batch, teacher: TeacherFn, run, settings: TrainSettings, device) -> None:
    """One forward of student and teacher on (a micro-batch of) the first batch, in eval mode,
    to fit the hint projections before training starts."""
    x, _labels, positions = batch
    part = micro_batches(len(x), settings.at_once)[0]
    x = x[part].to(device)
    module.eval()
    with torch.no_grad():
        teacher(x, None)  # the teacher's own forward: its maps, not cached outputs
        run(module, x)
    hints.prepare(device)


def _out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, torch.OutOfMemoryError) or "out of memory" in text or "can't allocate memory" in text


def _halved(micro: int, err: BaseException) -> int:
    """The next micro-batch after running out of memory at ``micro``; none below one sample."""
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    if micro <= 1:
        raise OnnxpruneError(f"fine-tuning ran out of memory with one sample at a time ({first_line(err)}); "
                             "free memory or use a machine with more") from err
    log.warning("fine-tuning ran out of memory with micro-batches of %d; retrying the step with %d", micro,
                micro // 2)
    return micro // 2


MIN_EPOCH_STEPS = 10  # an epoch of a few dozen images still gets this many steps (views differ)


def epoch_steps(images: int, batch_size: int, floor: int = MIN_EPOCH_STEPS) -> int:
    """Fine-tuning steps that count as one pass over ``images``: at least ``floor``, so the
    schedule keeps a floor whatever the data size (repeats are other views where views are on)."""
    return max(ceil(images / batch_size), floor)


def micro_batches(n: int, size: int) -> list[slice]:
    """``n`` samples in slices of at most ``size`` (0: one slice)."""
    size = size or n
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


@torch.no_grad()
def recalibrate_batchnorm(module: torch.nn.Module, data: Dataset, settings: TrainSettings,
                          run: Callable[[torch.nn.Module, torch.Tensor], list[torch.Tensor]], seed=0) -> None:
    """Re-estimate every BatchNorm's running statistics with the weights training ended on, on
    ``RECALIBRATION_VIEWS`` fresh views of the training images drawn as training drew them; the
    same in every process.

    During training they follow the batches by a moving average of weights that kept moving. The
    views, not the plain images: scale and shift were trained against the views' statistics, and
    a BN-folded model's inserted BatchNorm (``graph/batchnorm.py``) must go on computing the
    function it was trained to (on the plain images, R-Net lost 53.3 points on fresh faces instead
    of 33.3: ``results/batchnorm.txt``)."""
    norms = _batchnorms(module)
    if not norms:
        return
    device = torch.device(settings.device)
    module.eval()
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over the batches, not a moving one
        m.train()
    parts = [*np.atleast_1d(seed).tolist(), RECALIBRATION_SEED]
    batches = ceil(RECALIBRATION_VIEWS / settings.batch_size)
    loader = training_loader(data, settings.batch_size, batches, parts, settings.augment, settings.workers,
                             settings.device)
    for step, (x, _labels, _positions) in enumerate(loader):
        x, _ = _batch_views(x, None, step, parts, settings, device)
        for part in micro_batches(len(x), settings.micro_batch):
            run(module, x[part])
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    module.eval()


RECALIBRATION_SEED = 99  # the views' draws, apart from training's
RECALIBRATION_VIEWS = 256  # enough for the statistics of a channel, and a small share of an epoch's work


def _train_mode(module: torch.nn.Module) -> None:
    """BatchNorm learns its statistics; everything else (dropout) stays in eval mode."""
    module.eval()
    for norm in _batchnorms(module):
        norm.train()


def _batchnorms(module: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def _batch_views(x: torch.Tensor, labels: torch.Tensor | None, step: int, seed, settings: TrainSettings,
                 device: torch.device) -> tuple[torch.Tensor, Labels | None]:
    """A loader batch and its labels as the module takes them at ``step``: mixed (``augment`` mix,
    the labels following), on the device, channels-last where asked."""
    y: Labels | None = labels
    if settings.augment == "mix":
        x, mixed = mixed_views(x, torch.Generator().manual_seed(_step_seed(seed, step)), labels)
        y = mixed if mixed is not None else y
    x = x.to(device, non_blocking=True)
    if settings.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, None if y is None else y.to(device, non_blocking=True)
