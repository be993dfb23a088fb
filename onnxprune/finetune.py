"""Fine-tune the torch view of a pruned model: distillation from the original by default.

Classifier outputs (rank 2, several classes) use KL divergence to the teacher's softmax (or to
its own probabilities where the model ends in Softmax), plus cross-entropy when labels are given; other outputs use MSE scaled by the teacher's variance.
BatchNorm layers train (batch statistics, running statistics follow the pruned network, which
is what lets a pruned model recover); dropout stays off so fine-tuning is deterministic.

With a teacher function (``--augment``), each batch is shifted by a few pixels (seeded) and the
teacher is run on the very same shifted batch: consistent distillation on views the data set
does not hold. Shifts keep labels and work for any
output (a detector's or segmenter's teacher sees the same shift).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import feature_axis, is_classifier_output

__all__ = ["TrainSettings", "Targets", "loss_for", "finetune", "batches", "shift",
           "feature_mse", "is_distribution", "log_probabilities"]


@dataclass(frozen=True)
class TrainSettings:
    lr: float = 1e-3
    batch_size: int = 32
    seed: int = 0
    device: str = "cpu"
    weight_decay: float = 0.0
    label_weight: float = 1.0  # cross-entropy weight next to distillation, when labels exist
    spatial_dims: tuple[int, int] = (2, 3)  # H and W of the inputs (1, 2 for NHWC models)
    max_shift: float = 1 / 16  # of H and W; 0 turns augmentation off


@dataclass(frozen=True)
class Targets:
    """What the student learns from: the teacher's outputs, and labels when given."""

    teacher: list[np.ndarray]  # one array per graph output, aligned with the inputs
    labels: np.ndarray | None = None
    # the original model in torch, run on augmented batches; None: no augmentation
    teacher_fn: Callable[[torch.Tensor], list[torch.Tensor]] | None = None


def loss_for(
    outputs: list[torch.Tensor], teacher: list[torch.Tensor], labels: torch.Tensor | None, label_weight: float
) -> torch.Tensor:
    """Distillation (KL on logits, MSE otherwise) plus cross-entropy with labels on the first output."""
    total = outputs[0].new_zeros(())
    for i, (s, t) in enumerate(zip(outputs, teacher)):
        if is_classifier_output(tuple(s.shape)):
            log_s, log_t = log_probabilities(s, t), log_probabilities(t, t)
            total = total + F.kl_div(log_s, log_t, log_target=True, reduction="batchmean")
            if labels is not None and i == 0:
                total = total + label_weight * F.nll_loss(log_s, labels)
        else:
            total = total + feature_mse(s, t)
    return total


def is_distribution(t: torch.Tensor) -> bool:
    """Rows that are already probabilities: the model ends in Softmax (Keras applications do)."""
    return bool((t >= 0).all()) and bool(torch.allclose(t.sum(1), torch.ones_like(t[:, 0]), atol=1e-3))


def log_probabilities(x: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Log-probabilities of a classifier output: log-softmax of logits, or the log of a softmax
    the model computes itself (judged on the teacher, so student and teacher are read alike;
    log-softmax of probabilities would flatten every distribution towards uniform)."""
    if is_distribution(teacher):
        return x.clamp_min(1e-12).log()
    return F.log_softmax(x, 1)


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


def shift(x: torch.Tensor, dims: tuple[int, int], max_shift: float, generator: torch.Generator) -> torch.Tensor:
    """The batch translated by up to max_shift of its height and width (wrapping around)."""
    limits = [max(1, round(x.shape[d] * max_shift)) for d in dims]
    offsets = [int(torch.randint(-m, m + 1, (1,), generator=generator)) for m in limits]
    return torch.roll(x, shifts=offsets, dims=dims)


def batches(n: int, batch_size: int, steps: int, seed: int):
    """``steps`` index batches from seeded reshuffles of range(n)."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch_size:
            order.extend(rng.permutation(n).tolist())
        yield np.asarray(order[:batch_size])
        del order[:batch_size]


def finetune(
    module: torch.nn.Module,
    inputs: np.ndarray,
    targets: Targets,
    steps: int,
    settings: TrainSettings,
    run: Callable[[torch.nn.Module, torch.Tensor], list[torch.Tensor]],
    progress: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train the module's trainable parameters in place for ``steps`` steps; returns the losses."""
    if steps <= 0:
        return []
    device = torch.device(settings.device)
    module.to(device)
    module.eval()
    for sub in module.modules():
        if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
            sub.train()
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    losses = []
    generator = torch.Generator().manual_seed(settings.seed)
    augment = targets.teacher_fn is not None and settings.max_shift > 0
    for step, idx in enumerate(batches(len(inputs), settings.batch_size, steps, settings.seed)):
        x = torch.from_numpy(inputs[idx]).to(device)
        if augment:
            x = shift(x, settings.spatial_dims, settings.max_shift, generator)
            with torch.no_grad():
                teacher = [t.detach() for t in targets.teacher_fn(x)]
        else:
            teacher = [torch.from_numpy(t[idx]).to(device) for t in targets.teacher]
        labels = None if targets.labels is None else torch.from_numpy(targets.labels[idx]).to(device)
        loss = loss_for(run(module, x), teacher, labels, settings.label_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if progress:
            progress(step, losses[-1])
    module.to("cpu")
    module.eval()
    return losses
