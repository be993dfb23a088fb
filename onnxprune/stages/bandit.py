"""``--schedule cucb``: a round's channels chosen by a combinatorial UCB bandit while it trains.

Each round first decides how many channels every group keeps (the criterion's scores and the
selector, as the iterative schedule does). Then, at every fine-tuning step, each group runs only
that many of its channels, chosen by confidence bounds on what each is worth (below). The rest
are masked off where the group's consumers read them, so they take part in neither the forward
nor the backward pass. A step's reward is how much lower its loss came out than the running
average; a channel earns the difference between the steps it ran and those it sat out. After
the round's steps the channels that earned the most are kept and the others sliced out.
(Combinatorial UCB: Chen, Wang & Yuan 2013; channels as arms: dynamic channel execution.)
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..graph.groups import GroupAnalysis, consumer_inputs

__all__ = ["ChannelBandit"]

EXPLORATION = 1.0  # the confidence bound's weight, in units of the losses' spread
# the running average a step's loss is compared with: slow, so it follows fine-tuning's drift
# down, not the choice of channels (which would cancel the very differences the bandit reads)
BASELINE_DECAY = 0.98


class ChannelBandit:
    """Arms: the channels of every prunable group; a play: ``widths[g]`` channels of each group.

    The loss is one number per step, shared by every channel that ran, so a channel's worth is
    read by difference: the step's loss above its running average when the channel sat out,
    less the same when it ran (a channel the loss needs shows a higher loss without it). Each
    step sits out the channels whose worth is lowest by its lower confidence bound, so a channel
    never sat out (no estimate, an infinitely low bound) is tried first; the optimism is about
    what removing a channel costs.
    """

    def __init__(self, module: torch.nn.Module, model, analysis: GroupAnalysis, module_of: dict[str, str],
                 widths: dict[int, int], seed) -> None:
        self.analysis = analysis
        self.widths = {gid: n for gid, n in widths.items() if n < analysis.group(gid).channels}
        self.rng = np.random.default_rng(seed)
        zeros = {gid: np.zeros(analysis.group(gid).channels) for gid in self.widths}
        self.ran_sum, self.ran_n = {g: z.copy() for g, z in zeros.items()}, {g: z.copy() for g, z in zeros.items()}
        self.out_sum, self.out_n = {g: z.copy() for g, z in zeros.items()}, {g: z.copy() for g, z in zeros.items()}
        self.running = {gid: np.ones(analysis.group(gid).channels, dtype=bool) for gid in self.widths}
        self.steps = 0
        self.baseline: float | None = None
        self.spread = 0.0  # the steps' losses' standard deviation about the average: scales the bounds
        self._moments = np.zeros(3)  # count, mean, sum of squared deviations of the losses above the average
        self._masks: dict[str, torch.Tensor] = {}
        points = consumer_inputs(model, analysis)
        self._tensors = [t for t in points if any(g in self.widths for g in analysis.tensors[t].segments)]
        self._handles = [module.get_submodule(module_of[node]).register_forward_pre_hook(self._hook(t))
                         for t in self._tensors for node in points[t]]
        self._play()

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    def __call__(self, module: torch.nn.Module, loss: torch.Tensor) -> None:
        """After a step: credit its loss to the channels that ran and those that sat out, then
        choose the next step's."""
        value = float(loss)
        if self.baseline is None:
            self.baseline = value
        above = value - self.baseline
        self.baseline = BASELINE_DECAY * self.baseline + (1 - BASELINE_DECAY) * value
        n, mean, m2 = self._moments  # Welford: the spread of every step so far
        n, delta = n + 1, above - mean
        mean += delta / n
        m2 += delta * (above - mean)
        self._moments = np.array([n, mean, m2])
        self.spread = float(np.sqrt(m2 / n))
        for gid, ran in self.running.items():
            self.ran_sum[gid][ran] += above
            self.ran_n[gid][ran] += 1
            self.out_sum[gid][~ran] += above
            self.out_n[gid][~ran] += 1
        self.steps += 1
        self._play()

    def worth(self, gid: int) -> np.ndarray:
        """How much higher the loss ran without each channel than with it (NaN: never sat out)."""
        out = np.where(self.out_n[gid] > 0, self.out_sum[gid] / np.maximum(self.out_n[gid], 1), np.nan)
        ran = self.ran_sum[gid] / np.maximum(self.ran_n[gid], 1)
        return out - ran

    def keep(self) -> dict[int, np.ndarray]:
        """Per group, the ``widths`` channels worth the most (sorted indices; one never sat out
        counts as worth keeping); groups the round does not narrow keep every channel."""
        chosen = {}
        for g in self.analysis.prunable:
            if g.id not in self.widths:
                chosen[g.id] = np.arange(g.channels)
                continue
            worth = np.nan_to_num(self.worth(g.id), nan=np.inf)
            order = np.lexsort((self.rng.random(g.channels), -worth))
            chosen[g.id] = np.sort(order[: self.widths[g.id]])
        return chosen

    def _play(self) -> None:
        t = self.steps + 1
        for gid, width in self.widths.items():
            worth = self.worth(gid)
            bound = EXPLORATION * self.spread * np.sqrt(2 * math.log(t + 1) / np.maximum(self.out_n[gid], 1))
            # each bound drawn between half and one and a half of its width: channels that always sat
            # out together would keep equal estimates, and be confounded, for good
            lower = np.where(np.isnan(worth), -np.inf, worth - bound * self.rng.uniform(0.5, 1.5, len(worth)))
            order = np.lexsort((self.rng.random(len(lower)), lower))  # lowest first; ties at random
            ran = np.ones(len(lower), dtype=bool)
            ran[order[: len(lower) - width]] = False
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
