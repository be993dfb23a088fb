"""What a criterion may read about a group: its weights, its BatchNorm scales, the observed signal.

Scores come from ``score_groups``, which builds one ``Stats`` per model and calls the criterion
for every prunable group in order (so a seeded criterion draws the same numbers every run).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
from onnx import numpy_helper

from ..graph.channels import Slot
from ..graph.groups import ChannelGroup, GroupAnalysis
from .registry import Criterion

__all__ = ["Stats", "score_groups"]


def _segment_ranges(segments: tuple[int, ...], sizes: tuple[int, ...], gid: int) -> Iterator[tuple[int, int]]:
    offset = 0
    for seg, n in zip(segments, sizes):
        if seg == gid:
            yield offset, offset + n
        offset += n


def _summed(parts: list[np.ndarray], channels: int) -> np.ndarray:
    return np.sum(parts, axis=0) if parts else np.zeros(channels)


class Stats:
    """Per-channel statistics of one model's groups, read lazily by criteria."""

    def __init__(self, model: onnx.ModelProto, analysis: GroupAnalysis,
                 observed: dict[str, np.ndarray] | None, seed: int):
        self.analysis = analysis
        self.observed = observed or {}  # per observed tensor, the reduced signal per channel
        self.rng = np.random.default_rng(seed)
        self._inits = {i.name: i for i in model.graph.initializer}
        self._nodes = {n.name: n for n in model.graph.node}

    def observed_sum(self, group: ChannelGroup) -> np.ndarray:
        """The observed signal of the group's channels, summed over the tensors that carry them."""
        parts = []
        for tensor, values in self.observed.items():
            layout = self.analysis.tensors[tensor]
            parts += [values[a:b] for a, b in _segment_ranges(layout.segments, layout.sizes, group.id)]
        return _summed(parts, group.channels)

    def _slots(self, group: ChannelGroup) -> Iterator[tuple[Slot, onnx.NodeProto]]:
        for slot in self.analysis.slots:
            if group.id in slot.segments:
                yield slot, self._nodes[slot.node]

    def _producer_rows(self, group: ChannelGroup) -> Iterator[np.ndarray]:
        """Each producer's weights as one row per channel of the group: (channels, weights)."""
        for slot, node in self._slots(group):
            if slot.role == "producer" and slot.initializer == node.input[1]:
                array = numpy_helper.to_array(self._inits[slot.initializer])
                moved = np.moveaxis(array, slot.axis, 0)
                channels = sum(slot.sizes)
                rows = moved.reshape(slot.outer, channels, slot.inner, -1).transpose(1, 0, 2, 3).reshape(channels, -1)
                for a, b in _segment_ranges(slot.segments, slot.sizes, group.id):
                    yield rows[a:b]

    def producer_norms(self, group: ChannelGroup, order: int) -> np.ndarray:
        """Per-channel L1 (``order`` 1) or L2 norm of the producers' weights, summed over producers."""
        norms = [np.abs(r).sum(1) if order == 1 else np.sqrt((r**2).sum(1)) for r in self._producer_rows(group)]
        return _summed(norms, group.channels)

    def producer_filters(self, group: ChannelGroup) -> np.ndarray:
        """Every producer's weights of each channel side by side: (channels, weights); (channels, 0)
        where the group has no weighted producer."""
        rows = [r.astype(np.float64) for r in self._producer_rows(group)]
        return np.concatenate(rows, axis=1) if rows else np.zeros((group.channels, 0))

    def batchnorm_scales(self, group: ChannelGroup) -> np.ndarray | None:
        """|γ| of the BatchNorms on the group's channels, summed; None when there is none."""
        parts: list[np.ndarray] = []
        for slot, node in self._slots(group):
            if node.op_type == "BatchNormalization" and slot.initializer == node.input[1]:
                gamma = np.abs(numpy_helper.to_array(self._inits[slot.initializer]).reshape(-1))
                parts += [gamma[a:b] for a, b in _segment_ranges(slot.segments, slot.sizes, group.id)]
        return _summed(parts, group.channels) if parts else None


def score_groups(criterion: Criterion, model: onnx.ModelProto, analysis: GroupAnalysis,
                 observed: dict[str, np.ndarray] | None = None, seed: int = 0) -> dict[int, np.ndarray]:
    """One score per channel for every prunable group; higher means more important."""
    stats = Stats(model, analysis, observed, seed)
    return {g.id: np.asarray(criterion.score(g, stats)) for g in analysis.prunable}

