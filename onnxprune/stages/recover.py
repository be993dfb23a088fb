"""How the final fine-tuning recovers the pruned model: plainly, or dense → sparse → dense (DSD).

DSD (Han et al. 2017, "DSD: Dense-Sparse-Dense Training for Deep Neural Networks"): train
dense; zero each weight tensor's smallest-magnitude share and train under that mask, so the
remaining weights learn to carry the model; lift the mask and train dense again at a tenth of
the learning rate, so the zeroed weights regrow from zero. The written model is dense: the mask
only shapes training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

import torch

from ..data.sources import Dataset
from ..torchview.finetune import TeacherFn, TrainSettings

__all__ = ["MagnitudeMask", "recover"]

log = logging.getLogger(__name__)

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
