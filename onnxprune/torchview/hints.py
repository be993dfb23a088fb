"""Feature hints (Romero et al., FitNets, 2015): distillation that also pulls a few of the pruned
model's intermediate feature maps towards the original's.

With a few dozen images the outputs alone say little about what an inner layer lost; the
original's feature maps say it at every pixel. The pruned and the original graph share node
names, so the maps correspond by name: the last map of each spatial size (the end of each stage)
that both graphs compute. The pruned map has fewer channels, so a 1×1 projection maps it onto
the original's; it starts as the least-squares fit on the first batch (the best linear map the
cut left) and trains with the student, and it is dropped after fine-tuning: nothing of it is
written.
"""

from __future__ import annotations

from collections.abc import Callable

import onnx
import torch
from torch import nn

from .finetune import feature_mse

__all__ = ["hint_nodes", "FeatureHints", "MOST_HINTS"]

MOST_HINTS = 4  # stage ends matched, deepest first


def hint_nodes(student: onnx.ModelProto, teacher: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> list[str]:
    """Names of the nodes whose maps are matched: per spatial size, the last node both graphs
    have (same name and op) with a 4-D float output, the deepest sizes first."""
    teacher_ops = {n.name: n.op_type for n in teacher.graph.node}
    last_at: dict[tuple[int, int], str] = {}
    for node in student.graph.node:
        shape = shapes.get(node.output[0]) if node.output else None
        if shape is None or len(shape) != 4 or teacher_ops.get(node.name) != node.op_type:
            continue
        if node.op_type in ("Constant", "Shape", "Reshape", "Transpose"):
            continue
        last_at[(shape[2], shape[3])] = node.name
    by_depth = sorted(last_at.items(), key=lambda item: item[0][0] * item[0][1])  # smallest maps are deepest
    return [name for _, name in by_depth[:MOST_HINTS]]


class FeatureHints:
    """Captures the matched maps of a student and a teacher module as they run, and the loss
    between them; ``close`` removes the hooks (the projections go with this object)."""

    def __init__(self, student: nn.Module, student_names: dict[str, str], teacher: nn.Module,
                 teacher_names: dict[str, str], nodes: list[str], weight: float = 1.0) -> None:
        self.nodes, self.weight = nodes, weight
        self.student_maps: dict[str, torch.Tensor] = {}
        self.teacher_maps: dict[str, torch.Tensor] = {}
        self.hooks = [self._capture(student, student_names[n], n, self.student_maps) for n in nodes]
        self.hooks += [self._capture(teacher, teacher_names[n], n, self.teacher_maps) for n in nodes]
        self.projections = nn.ModuleDict()

    @staticmethod
    def _capture(module: nn.Module, submodule: str, node: str, into: dict[str, torch.Tensor]):
        def keep(_module, _inputs, output) -> None:
            into[node] = output[0] if isinstance(output, (tuple, list)) else output

        return module.get_submodule(submodule).register_forward_hook(keep)

    def parameters(self) -> list[nn.Parameter]:
        return list(self.projections.parameters())

    def prepare(self, device: torch.device) -> None:
        """Fit the projections on the maps captured last (least squares), before training."""
        for node in self.nodes:
            s, t = self.student_maps[node].detach().float(), self.teacher_maps[node].detach().float()
            projection = nn.Conv2d(s.shape[1], t.shape[1], 1).to(device)
            with torch.no_grad():
                x = s.permute(0, 2, 3, 1).reshape(-1, s.shape[1])
                y = t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])
                x1 = torch.cat([x, torch.ones_like(x[:, :1])], 1)
                gram = x1.T @ x1 + 1e-3 * torch.eye(x1.shape[1], device=x1.device) * x1.pow(2).mean()
                solution = torch.linalg.solve(gram, x1.T @ y)  # (C_s + 1, C_t)
                projection.weight.copy_(solution[:-1].T[:, :, None, None])
                assert projection.bias is not None  # made with one
                projection.bias.copy_(solution[-1])
            self.projections[node.replace(".", "_")] = projection

    def loss(self) -> torch.Tensor:
        """Per-channel MSE of each projected map against the original's, over its variance."""
        total = None
        for node in self.nodes:
            projected = self.projections[node.replace(".", "_")](self.student_maps[node].float())
            term = feature_mse(projected, self.teacher_maps[node].detach().float())
            total = term if total is None else total + term
        assert total is not None
        return self.weight * total / len(self.nodes)

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()
        self.student_maps.clear()
        self.teacher_maps.clear()


HintsFactory = Callable[[nn.Module], FeatureHints | None]
