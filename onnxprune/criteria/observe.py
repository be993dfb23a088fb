"""Watch the tensors a group's consumers read, in torch, and reduce a signal per channel.

The tensor a consumer (next Conv, Gemm, MatMul) reads is what pruning changes: removing a channel
means the consumer sees zero there. Activations and gradients are captured with hooks on the
consumer modules; the criterion's ``Observation`` reduces its signal per batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch

from ..graph.channels import TensorChannels
from ..graph.groups import GroupAnalysis
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
    points: dict[str, list[str]],
    module_of: dict[str, str],
    batches: Iterable[tuple[int, torch.Tensor]],
    observation: Observation,
    loss_fn: LossFn | None,
    run: Callable[[torch.nn.Module, torch.Tensor], list[torch.Tensor]],
) -> dict[str, dict[int, np.ndarray]]:
    """Per observed tensor (``points``: each with the consumer nodes that read it,
    ``groups.consumer_inputs``; the first one's hook watches it), the reduced signal per channel
    of each batch, by batch index.

    An observation that needs the gradient back-propagates ``loss_fn``; parameter gradients are
    cleared afterwards.
    """
    captured: dict[str, torch.Tensor] = {}  # activations whose gradient has not arrived yet
    needs_grad = observation.gradient
    values: dict[str, dict[int, np.ndarray]] = {}
    batch_index = [0]
    gradient_scale = [1.0]

    def record(tensor: str, a: torch.Tensor, g: torch.Tensor | None) -> None:
        layout = analysis.tensors[tensor]
        if g is not None and gradient_scale[0] != 1.0:
            g = g * (1.0 / gradient_scale[0])  # a power of two: exactly the unscaled gradient
        signal = observation.signal(as_channels(a, layout), None if g is None else as_channels(g, layout))
        values.setdefault(tensor, {})[batch_index[0]] = observation.reduce(signal.double()).cpu().numpy()

    def hook_for(tensor: str):
        def hook(_module, inputs):
            x = inputs[0]
            if not needs_grad:
                record(tensor, x.detach(), None)
            elif x.requires_grad:
                captured[tensor] = x.detach()

                def on_gradient(g: torch.Tensor) -> None:
                    # reduced as soon as it arrives: the gradients of a large input are never all held
                    record(tensor, captured.pop(tensor), g.detach())

                x.register_hook(on_gradient)
            else:  # computed from constants alone: nothing flows back to it
                record(tensor, x.detach(), torch.zeros_like(x))
        return hook

    handles = [
        module.get_submodule(module_of[nodes[0]]).register_forward_pre_hook(hook_for(tensor))
        for tensor, nodes in points.items()
    ]
    try:
        for index, x in batches:
            batch_index[0] = index
            captured.clear()
            if needs_grad:
                x = x.clone().requires_grad_(True)  # so gradients reach the first consumer too
                outputs = run(module, x)
                assert loss_fn is not None
                gradient_scale[0], heads, seeds = _scaled_gradients(loss_fn(outputs, index), outputs)
                if heads:
                    torch.autograd.backward(heads, seeds)
                for tensor, a in list(captured.items()):  # off the loss's path: no gradient came
                    record(tensor, a, torch.zeros_like(a))
                captured.clear()
            else:
                with torch.no_grad():
                    run(module, x)
    finally:
        for handle in handles:
            handle.remove()
        module.zero_grad(set_to_none=True)
    return values


def _scaled_gradients(loss: torch.Tensor, outputs: list[torch.Tensor]
                      ) -> tuple[float, list[torch.Tensor], list[torch.Tensor]]:
    """The loss's gradient at the outputs, scaled by a power of two that brings its largest
    value near 1: (the scale, the outputs, their scaled gradients) to back-propagate.

    A confident model's loss has a gradient of 1e-30 or less at its logits, and everything
    behind it is then subnormal: float32 arithmetic on subnormals runs ten times slower on x86
    (ResNet-50's scoring pass took 72 s instead of 7), and flushing them to zero only holds on
    the calling thread, not torch's workers. Scaling by 2^k changes no bit of the gradients
    (unless they would overflow), so dividing it out again gives the same signal.
    """
    wanted = [o for o in outputs if o.requires_grad]
    if not wanted:
        return 1.0, [], []
    grads = torch.autograd.grad(loss, wanted, retain_graph=True, allow_unused=True)
    peak = max((float(g.abs().max()) for g in grads if g is not None and g.numel()), default=0.0)
    # within float32's range either way, so the scale itself is a float32 power of two
    scale = 2.0 ** min(100, -math.floor(math.log2(peak))) if 0.0 < peak < float("inf") else 1.0
    pairs = [(o, g * scale) for o, g in zip(wanted, grads) if g is not None]
    return scale, [o for o, _ in pairs], [g for _, g in pairs]
