"""``--schedule cucb``: a round's channels chosen by a combinatorial UCB bandit while it trains.

Each round first decides how many channels every group keeps (the criterion's scores and the
selector, as the iterative schedule does). Then, at every fine-tuning step, each group runs only
that many of its channels: the ones with the highest upper confidence bound on their reward. The
rest are masked off where the group's consumers read them, so they take part in neither the
forward nor the backward pass. A step's reward, shared by every channel that ran, is how much
lower its loss came out than the running average. After the round's steps the channels that
earned the most on average are kept and the others sliced out. (Combinatorial UCB with
semi-bandit feedback: Chen, Wang & Yuan 2013; channels as arms: dynamic channel execution.)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .groups import GroupAnalysis, consumer_inputs

__all__ = ["ChannelBandit"]

EXPLORATION = 1.0  # the confidence bonus's weight, in units of the rewards' spread
BASELINE_DECAY = 0.9  # the running average a step's loss is compared with


class ChannelBandit:
    """Arms: the channels of every prunable group; a play: ``widths[g]`` channels of each group."""

    def __init__(self, module: torch.nn.Module, model, analysis: GroupAnalysis, module_of: dict[str, str],
                 widths: dict[int, int], seed) -> None:
        self.analysis = analysis
        self.widths = {gid: n for gid, n in widths.items() if n < analysis.group(gid).channels}
        self.rng = np.random.default_rng(seed)
        self.total = {gid: np.zeros(analysis.group(gid).channels) for gid in self.widths}
        self.plays = {gid: np.zeros(analysis.group(gid).channels) for gid in self.widths}
        self.running = {gid: np.ones(analysis.group(gid).channels, dtype=bool) for gid in self.widths}
        self.steps = 0
        self.baseline: float | None = None
        self.spread = 1.0  # the rewards' typical size, which scales the confidence bonus
        self._masks: dict[str, torch.Tensor] = {}
        points = consumer_inputs(model, analysis)
        self._tensors = [t for t in points if any(g in self.widths for g in analysis.tensors[t].segments)]
        self._handles = [module.get_submodule(module_of[points[t]]).register_forward_pre_hook(self._hook(t))
                         for t in self._tensors]
        self._play()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def __call__(self, module: torch.nn.Module, loss: torch.Tensor) -> None:
        """After a step: reward the channels that ran, then choose the next step's."""
        value = float(loss)
        if self.baseline is None:
            self.baseline, self.spread = value, max(abs(value) * 0.1, 1e-8)
        reward = self.baseline - value
        self.spread = BASELINE_DECAY * self.spread + (1 - BASELINE_DECAY) * abs(reward)
        self.baseline = BASELINE_DECAY * self.baseline + (1 - BASELINE_DECAY) * value
        for gid, ran in self.running.items():
            self.total[gid][ran] += reward
            self.plays[gid][ran] += 1
        self.steps += 1
        self._play()

    def keep(self) -> dict[int, np.ndarray]:
        """Per group, the ``widths`` channels with the best mean reward (sorted indices); groups
        the round does not narrow keep every channel."""
        chosen = {}
        for g in self.analysis.prunable:
            if g.id not in self.widths:
                chosen[g.id] = np.arange(g.channels)
                continue
            mean = self.total[g.id] / np.maximum(self.plays[g.id], 1)
            mean[self.plays[g.id] == 0] = -np.inf
            order = np.lexsort((self.rng.random(g.channels), -mean))
            chosen[g.id] = np.sort(order[: self.widths[g.id]])
        return chosen

    def _play(self) -> None:
        t = self.steps + 1
        for gid, width in self.widths.items():
            plays, total = self.plays[gid], self.total[gid]
            bonus = EXPLORATION * self.spread * np.sqrt(2 * math.log(t + 1) / np.maximum(plays, 1))
            index = np.where(plays == 0, np.inf, total / np.maximum(plays, 1) + bonus)
            order = np.lexsort((self.rng.random(len(index)), -index))  # ties broken at random
            ran = np.zeros(len(index), dtype=bool)
            ran[order[:width]] = True
            self.running[gid] = ran
        self._masks = {t: torch.from_numpy(self._extent_mask(t)) for t in self._tensors}

    def _extent_mask(self, tensor: str) -> np.ndarray:
        """1/0 along the tensor's channel axis (flattened layouts repeated as they interleave)."""
        layout = self.analysis.tensors[tensor]
        parts = [self.running[g].astype(np.float32) if g in self.running else np.ones(n, np.float32)
                 for g, n in zip(layout.segments, layout.sizes)]
        channels = np.concatenate(parts)
        return np.tile(np.repeat(channels, layout.inner), layout.outer)

    def _hook(self, tensor: str):
        axis = self.analysis.tensors[tensor].axis

        def hook(_module, inputs):
            x = inputs[0]
            mask = self._masks[tensor].to(device=x.device, dtype=x.dtype)
            shape = [1] * x.dim()
            shape[axis] = -1
            return (x * mask.view(shape), *inputs[1:])
        return hook
