"""Watch the tensors a group's consumers read, in torch, and reduce a signal per channel.

The tensor a consumer (next Conv, Gemm, MatMul) reads is what pruning changes: removing a channel
means the consumer sees zero there. Activations and gradients are captured with hooks on the
consumer modules; the criterion's ``Observation`` reduces its signal per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from ..channels import TensorChannels
from ..groups import GroupAnalysis
from .registry import Observation

__all__ = ["observe", "as_channels"]

LossFn = Callable[[list[torch.Tensor], int], torch.Tensor]


def as_channels(x: torch.Tensor, layout: TensorChannels) -> torch.Tensor:
    """(batch, channels, positions) view of a tensor whose channel axis may be flattened."""
    x = x.movedim(layout.axis, 1)
    batch, extent = x.shape[0], x.shape[1]
    rest = x.shape[2:].numel() if x.dim() > 2 else 1
    x = x.reshape(batch, layout.outer, layout.channels, layout.inner, rest)
    return x.permute(0, 2, 1, 3, 4).reshape(batch, layout.channels, -1) if extent else x


def observe(
    module: torch.nn.Module,
    analysis: GroupAnalysis,
    first_input_of: dict[str, str],
    module_of: dict[str, str],
    batches: Iterable[tuple[int, torch.Tensor]],
    observation: Observation,
    loss_fn: LossFn | None,
    run: Callable[[torch.nn.Module, torch.Tensor], list[torch.Tensor]],
) -> dict[str, dict[int, np.ndarray]]:
    """Per observed tensor, the reduced signal per channel of each batch, by batch index.

    An observation that needs the gradient back-propagates ``loss_fn``; parameter gradients are
    cleared afterwards.
    """
    points: dict[str, str] = {}
    for slot in analysis.slots:
        if slot.role == "consumer" and any(analysis.group(g).prunable for g in slot.segments):
            tensor = first_input_of[slot.node]
            points.setdefault(tensor, slot.node)
    captured: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}
    needs_grad = observation.gradient

    def hook_for(tensor: str):
        def hook(_module, inputs):
            x = inputs[0]
            captured[tensor] = x.detach()
            if needs_grad and x.requires_grad:
                x.register_hook(lambda g: grads.__setitem__(tensor, g.detach()))
        return hook

    handles = [
        module.get_submodule(module_of[node]).register_forward_pre_hook(hook_for(tensor))
        for tensor, node in points.items()
    ]
    values: dict[str, dict[int, np.ndarray]] = {}
    try:
        for index, x in batches:
            captured.clear()
            grads.clear()
            if needs_grad:
                x = x.clone().requires_grad_(True)  # so gradients reach the first consumer too
                outputs = run(module, x)
                assert loss_fn is not None
                loss_fn(outputs, index).backward()
            else:
                with torch.no_grad():
                    run(module, x)
            for tensor in points:
                if tensor not in captured:
                    continue
                layout = analysis.tensors[tensor]
                a = as_channels(captured[tensor], layout)
                g = as_channels(grads.get(tensor, torch.zeros_like(captured[tensor])), layout) if needs_grad else None
                s = observation.signal(a, g)
                values.setdefault(tensor, {})[index] = observation.reduce(s.double()).cpu().numpy()
    finally:
        for handle in handles:
            handle.remove()
        module.zero_grad(set_to_none=True)
    return values
