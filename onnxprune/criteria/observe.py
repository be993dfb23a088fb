"""Watch the tensors a group's consumers read, in torch, and reduce a signal per channel.

The tensor a consumer (next Conv, Gemm, MatMul) reads is what pruning changes: removing a channel
means the consumer sees zero there. Activations and gradients are captured with hooks on the
consumer modules; the signal is reduced per batch and averaged over batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch

from ..groups import GroupAnalysis, TensorChannels
from .parts import Reduction

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
    signal: str,
    reduction: Reduction,
    loss_fn: LossFn | None,
    run: Callable[[torch.nn.Module, torch.Tensor], list[torch.Tensor]],
    combine: str = "mean",
) -> dict[str, np.ndarray]:
    """Per observed tensor, the reduced signal per channel, averaged over batches (or their
    maximum with ``combine="max"``, for extremes over all the data).

    ``signal`` is "activation", "gradient" or "taylor" (activation × gradient); the latter two
    back-propagate ``loss_fn`` and leave parameter gradients untouched afterwards.
    """
    points: dict[str, str] = {}
    for slot in analysis.slots:
        if slot.role == "consumer" and any(analysis.group(g).prunable for g in slot.segments):
            tensor = first_input_of[slot.node]
            points.setdefault(tensor, slot.node)
    captured: dict[str, torch.Tensor] = {}
    grads: dict[str, torch.Tensor] = {}
    needs_grad = signal in ("gradient", "taylor")

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
    sums: dict[str, torch.Tensor] = {}
    count = 0
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
                if signal == "activation":
                    s = a
                else:
                    g = as_channels(grads.get(tensor, torch.zeros_like(captured[tensor])), layout)
                    s = g if signal == "gradient" else a * g
                value = reduction(s.double())
                if tensor not in sums:
                    sums[tensor] = value
                else:
                    sums[tensor] = torch.maximum(sums[tensor], value) if combine == "max" else sums[tensor] + value
            count += 1
    finally:
        for handle in handles:
            handle.remove()
        module.zero_grad(set_to_none=True)
    divisor = 1 if combine == "max" else max(count, 1)
    return {tensor: (total / divisor).cpu().numpy() for tensor, total in sums.items()}
