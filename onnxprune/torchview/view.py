"""The torch view of the model being pruned: import, observe, fine-tune, write back.

Holds the one ONNX model that is the source of truth and the torch module re-imported from it;
every change to weights goes back into the ONNX initializers before the next slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import torch

from ..criteria.observe import observe
from ..criteria.registry import Criterion, Observation
from ..criteria.stats import score_groups
from ..data.sources import UNLABELLED, Dataset
from ..graph.groups import GroupAnalysis, analyze_groups, consumer_inputs
from ..graph.image_input import ImageInput
from ..graph.load import LoadedModel
from ..graph.output_shapes import feature_axis
from ..graph.shapes import probe_shapes
from .distributed import gather_batches, ranks
from .finetune import (Targets, TeacherFn, TrainSettings, finetune, is_distribution, log_probabilities, loss_for,
                       output_kind)
from .hints import FeatureHints, hint_nodes
from .importer import Imported, import_model, torch_outputs, write_back

__all__ = ["TorchView"]


@dataclass
class TorchView:
    """An ONNX model and its torch module, kept in step."""

    model: onnx.ModelProto
    image: ImageInput
    imported: Imported
    analysis: GroupAnalysis | None = None  # the model's groups, where whoever made it knows them

    @classmethod
    def of(cls, model: onnx.ModelProto, image: ImageInput, check: bool = True,
           analysis: GroupAnalysis | None = None) -> TorchView:
        return cls(model, image, import_model(LoadedModel(model, image, None), check=check), analysis)

    def groups(self) -> GroupAnalysis:
        """The channel groups of the model as it is now: handed over by the slicer, or found once
        (fine-tuning changes weights, never the groups)."""
        if self.analysis is None:
            self.analysis = analyze_groups(LoadedModel(self.model, self.image, None))
        return self.analysis

    def run(self, module: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
        return torch_outputs(module, self.model, x)

    def observe(
        self, analysis: GroupAnalysis, observation: Observation, inputs: np.ndarray, batch_size: int,
        targets: Targets | None, seed: int,
    ) -> dict[str, list[np.ndarray]]:
        """The observation on each observed tensor, reduced per channel, one array per batch (in
        batch order). Under torchrun each process observes every world-th batch and all gather."""
        where = ranks()
        batches = [
            (i, torch.from_numpy(inputs[start : start + batch_size]))
            for i, start in enumerate(range(0, len(inputs), batch_size)) if i % where.world == where.rank
        ]
        loss_fn = None
        if observation.gradient and targets is not None:
            loss_fn = _scoring_loss(targets, batch_size, seed)
        mine = observe(self.imported.module, analysis, consumer_inputs(self.model, analysis), self.imported.module_of,
                       batches,
                       observation, loss_fn, self.run)
        return gather_batches(mine)

    def scores(self, analysis: GroupAnalysis, criterion: Criterion, inputs: np.ndarray, batch_size: int,
               targets: Targets | None, seed: int) -> dict[int, np.ndarray]:
        """The criterion's score per channel of every prunable group (its signal averaged over batches)."""
        observed: dict[str, np.ndarray] | None = None
        if criterion.observes is not None:
            per_batch = self.observe(analysis, criterion.observes, inputs, batch_size, targets, seed)
            observed = {tensor: np.asarray(sum(values)) / max(len(values), 1) for tensor, values in per_batch.items()}
        return score_groups(criterion, self.model, analysis, observed, seed)

    def finetune(self, data: Dataset, teacher: TeacherFn, steps: int, settings: TrainSettings, seed,
                 progress=None, after_step=None) -> list[float]:
        """Fine-tune in torch, then write the weights back into the ONNX model. With
        ``settings.feature_hints`` and a teacher that has a torch view of its own (``Teacher``),
        stage-end feature maps are matched too (``hints.py``)."""
        hints = self._hints(teacher) if settings.feature_hints and steps > 0 else None
        try:
            losses = finetune(self.imported.module, data, teacher, steps, settings, self.run, seed, progress, hints,
                              after_step)
        finally:
            if hints is not None:
                hints.close()
        if losses:
            self.model = write_back(self.model, self.imported.module, self.imported.links, trainable_only=False)
        return losses


    def _hints(self, teacher) -> FeatureHints | None:
        view = getattr(teacher, "view", None)
        if view is None:
            return None
        nodes = hint_nodes(self.model, view.model, probe_shapes(self.model, self.image))
        if not nodes:
            return None
        return FeatureHints(self.imported.module, self.imported.module_of, view.imported.module,
                            view.imported.module_of, nodes)


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
            kind = output_kind(i, tuple(s.shape), targets.kinds)
            if kind == ("classes", 1) and s.dim() == 2:
                given = targets.labels[sl] if targets.labels is not None and i == 0 else None
                if given is not None and (given != UNLABELLED).all():
                    labels = torch.from_numpy(given)
                else:
                    probs = (t.double() if is_distribution(t) else torch.softmax(t.double(), 1)).numpy()
                    sampled = np.array([rng.choice(len(p), p=p / p.sum()) for p in probs], dtype=np.int64)
                    # an image the user left unlabelled takes a label drawn from the teacher
                    labels = torch.from_numpy(sampled if given is None else np.where(given == UNLABELLED, sampled,
                                                                                     given))
                total = total + torch.nn.functional.nll_loss(log_probabilities(s, t), labels)
            else:
                noise = torch.from_numpy(rng.standard_normal(t.shape).astype(np.float32)) * _feature_std(t)
                total = total + loss_for([s], [t + noise], None, 0.0, (kind,))
        return total

    return loss


def _feature_std(t: torch.Tensor) -> torch.Tensor:
    """Each feature's standard deviation, shaped to broadcast against ``t``."""
    if t.dim() < 2:
        return t.std()
    axis = feature_axis(tuple(t.shape))
    dims = [d for d in range(t.dim()) if d != axis]
    return t.std(dims, keepdim=True)
