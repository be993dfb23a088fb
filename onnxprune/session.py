"""The torch view of the model being pruned: import, observe, fine-tune, write back.

Holds the one ONNX model that is the source of truth and the torch module re-imported from it;
every change to weights goes back into the ONNX initializers before the next slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch

from .criteria import Recipe
from .criteria.observe import observe
from .criteria.parts import REDUCTIONS
from .criteria.score import score_groups
from .finetune import Targets, TrainSettings, finetune, is_distribution, log_probabilities, loss_for
from .groups import GroupAnalysis
from .importer import Imported, import_model, torch_outputs, write_back
from .load import ImageInput, LoadedModel
from .metrics import feature_axis

__all__ = ["TorchView"]


@dataclass
class TorchView:
    """An ONNX model and its torch module, kept in step."""

    model: onnx.ModelProto
    image: ImageInput
    imported: Imported

    @classmethod
    def of(cls, model: onnx.ModelProto, image: ImageInput, check: bool = True) -> TorchView:
        return cls(model, image, import_model(LoadedModel(model, image, None), check=check))

    def run(self, module: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        return torch_outputs(module, self.model, x)

    def observe(
        self, analysis: GroupAnalysis, recipe: Recipe, inputs: np.ndarray, batch_size: int,
        targets: Targets | None, seed: int, reduction: str | None = None, combine: str = "mean",
    ) -> dict[str, np.ndarray]:
        """The criterion's signal on each observed tensor, reduced per channel (``combine``: see
        ``observe``)."""
        first_input = {n.name: n.input[0] for n in self.model.graph.node if n.input}
        batches = [
            (i, torch.from_numpy(inputs[start : start + batch_size]))
            for i, start in enumerate(range(0, len(inputs), batch_size))
        ]
        loss_fn = None
        if recipe.signal in ("gradient", "taylor") and targets is not None:
            loss_fn = _scoring_loss(targets, batch_size, seed)
        return observe(
            self.imported.module, analysis, first_input, self.imported.module_of, batches,
            recipe.signal, REDUCTIONS[reduction or recipe.reduction], loss_fn, self.run, combine,
        )

    def scores(self, analysis: GroupAnalysis, recipe: Recipe, inputs: np.ndarray, batch_size: int,
               targets: Targets | None, seed: int) -> dict[int, np.ndarray]:
        observed = self.observe(analysis, recipe, inputs, batch_size, targets, seed) if recipe.needs_data else None
        return score_groups(recipe, self.model, analysis, observed, seed)

    def finetune(self, inputs: np.ndarray, targets: Targets, steps: int, settings: TrainSettings,
                 progress=None) -> list[float]:
        """Fine-tune in torch, then write the weights back into the ONNX model."""
        losses = finetune(self.imported.module, inputs, targets, steps, settings, self.run, progress)
        if losses:
            self.model = write_back(self.model, self.imported.module, self.imported.links, trainable_only=False)
        return losses


def _scoring_loss(targets: Targets, batch_size: int, seed: int):
    """A loss that is not zero at the start: true labels, or labels sampled from the teacher.

    Label-free, a classifier's labels are drawn from the teacher's softmax (as Fisher pruning
    does); other outputs are compared with the teacher's plus Gaussian noise of each feature's
    own scale (``metrics.feature_axis``).
    """

    def loss(outputs: list[torch.Tensor], batch_index: int) -> torch.Tensor:
        rng = np.random.default_rng([seed, batch_index])
        sl = slice(batch_index * batch_size, batch_index * batch_size + len(outputs[0]))
        teacher = [torch.from_numpy(t[sl]) for t in targets.teacher]
        total = outputs[0].new_zeros(())
        for i, (s, t) in enumerate(zip(outputs, teacher)):
            if s.dim() == 2 and s.shape[1] >= 2:
                if targets.labels is not None and i == 0:
                    labels = torch.from_numpy(targets.labels[sl])
                else:
                    probs = (t.double() if is_distribution(t) else torch.softmax(t.double(), 1)).numpy()
                    labels = torch.from_numpy(
                        np.array([rng.choice(len(p), p=p / p.sum()) for p in probs], dtype=np.int64)
                    )
                total = total + torch.nn.functional.nll_loss(log_probabilities(s, t), labels)
            else:
                noise = torch.from_numpy(rng.standard_normal(t.shape).astype(np.float32)) * _feature_std(t)
                total = total + loss_for([s], [t + noise], None, 0.0)
        return total

    return loss


def _feature_std(t: torch.Tensor) -> torch.Tensor:
    """Each feature's standard deviation, shaped to broadcast against ``t``."""
    if t.dim() < 2:
        return t.std()
    axis = feature_axis(tuple(t.shape))
    dims = [d for d in range(t.dim()) if d != axis]
    return t.std(dims, keepdim=True)
