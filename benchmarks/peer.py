"""Torch-Pruning (VainF/Torch-Pruning), the peer the benchmarks compare against.

One entry: prune a torch module with TaylorImportance, globally, to a MAC goal. The pruning ratio
is found by bisection on copies (one-shot pruning at ratio r is monotone in MACs), so the result
lands on the goal as closely as the peer's own granularity allows, in a handful of passes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch

__all__ = ["taylor_prune_to"]


def _pruned_copy(model: torch.nn.Module, example: torch.Tensor, loss_fn: Callable[[torch.nn.Module], torch.Tensor],
                 ratio: float, round_to: int | None) -> torch.nn.Module:
    import torch_pruning as tp

    trial = copy.deepcopy(model)
    head = [m for m in trial.modules() if isinstance(m, torch.nn.Linear)][-1:]
    pruner = tp.pruner.MetaPruner(trial, example, importance=tp.importance.TaylorImportance(),
                                  pruning_ratio=ratio, global_pruning=True, iterative_steps=1,
                                  ignored_layers=head, round_to=round_to)
    trial.zero_grad()
    loss_fn(trial).backward()
    pruner.step()
    trial.zero_grad()
    return trial


def taylor_prune_to(model: torch.nn.Module, example: torch.Tensor, loss_fn: Callable[[torch.nn.Module], torch.Tensor],
                    mac_goal: float, round_to: int | None = None, steps: int = 10) -> torch.nn.Module:
    """A pruned copy of ``model`` with at most ``mac_goal`` MACs (Torch-Pruning's count)."""
    import torch_pruning as tp

    if tp.utils.count_ops_and_params(model, example)[0] <= mac_goal:
        return model
    lo, hi, best = 0.0, 0.99, None
    for _ in range(steps):
        mid = (lo + hi) / 2
        trial = _pruned_copy(model, example, loss_fn, mid, round_to)
        if tp.utils.count_ops_and_params(trial, example)[0] <= mac_goal:
            hi, best = mid, trial
        else:
            lo = mid
    return best if best is not None else _pruned_copy(model, example, loss_fn, hi, round_to)
