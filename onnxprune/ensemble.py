"""``--teacher ensemble``: distil towards the original mixed with the student's own consensus.

Temporal ensembling (Laine & Aila 2017): every training image keeps a running average of the
probabilities the student gave it, over the views and epochs it was seen in, corrected for its
start at zero. The classifier's target for an image is that consensus mixed with the original's
probabilities; an image not seen yet takes the original's alone. With few labels it is meant to
add a target that is steadier than one view's and nearer the student's reach than the original's.
"""

from __future__ import annotations

import numpy as np
import torch

from .finetune import TeacherFn, is_distribution
from .metrics import is_classifier_output

__all__ = ["EnsembleTeacher", "ENSEMBLE_DECAY", "ORIGINAL_SHARE"]

ENSEMBLE_DECAY = 0.6  # Laine & Aila's α: the weight of what came before in the running average
ORIGINAL_SHARE = 0.5  # the original's part of the mixed target


class EnsembleTeacher:
    """The run's teacher, plus each training image's running average of the student's
    probabilities on the first output. Called like the teacher it wraps (scoring, calibration);
    ``finetune`` asks it for ``mixed`` targets and ``update``s it with the student's outputs."""

    def __init__(self, teacher: TeacherFn, images: int, decay: float = ENSEMBLE_DECAY,
                 share: float = ORIGINAL_SHARE) -> None:
        self.teacher, self.images, self.decay, self.share = teacher, images, decay, share
        self.average: np.ndarray | None = None  # (images, classes), started at zero
        self.seen = np.zeros(images, dtype=np.int64)

    def __call__(self, x: torch.Tensor, positions: torch.Tensor | None = None) -> list[torch.Tensor]:
        return self.teacher(x, positions)

    def __getattr__(self, name: str):
        return getattr(self.teacher, name)  # the wrapped teacher's view, cache, … for hints

    def mixed(self, targets: list[torch.Tensor], positions: torch.Tensor) -> list[torch.Tensor]:
        """The first output's target for these training images: the original's probabilities
        mixed with the student's consensus where the image was seen before."""
        first = targets[0]
        if self.average is None or not is_classifier_output(tuple(first.shape)):
            return targets
        rows = positions.numpy()
        count = self.seen[rows]
        consensus = self.average[rows] / np.maximum(1 - self.decay ** count, 1e-12)[:, None]
        original = first if is_distribution(first) else torch.softmax(first, 1)
        ensemble = torch.from_numpy(consensus.astype(np.float32)).to(first.device)
        weight = torch.from_numpy(np.where(count > 0, self.share, 1.0).astype(np.float32)).to(first.device)[:, None]
        target = weight * original + (1 - weight) * ensemble
        # a model that ends in Softmax is compared in probabilities; one with logits in their log
        return [target if is_distribution(first) else target.clamp_min(1e-12).log(), *targets[1:]]

    def update(self, outputs: list[torch.Tensor], positions: torch.Tensor) -> None:
        """Fold the student's probabilities on these images into their running averages."""
        first = outputs[0].detach().float()
        if not is_classifier_output(tuple(first.shape)):
            return
        probabilities = (first if is_distribution(first) else torch.softmax(first, 1)).cpu().numpy()
        if self.average is None:
            self.average = np.zeros((self.images, probabilities.shape[1]), dtype=np.float64)
        rows = positions.numpy()
        self.average[rows] = self.decay * self.average[rows] + (1 - self.decay) * probabilities
        self.seen[rows] += 1
