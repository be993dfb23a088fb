"""Channel groups: the initializer axes that must keep or drop the same channel indices.

Each producer (Conv, ConvTranspose, Gemm, MatMul with a constant weight) opens a *space* of
channels. ``flow.trace`` follows every tensor's channel axis through the graph as a list of
segments (one space each: Concat places inputs side by side), records every initializer axis
that indexes those channels (a ``Slot``), and unites spaces that must stay aligned (residual
Add, squeeze-excite Mul, depthwise Conv). A group is a class of united spaces; it is blocked
when any of its spaces reaches a graph output, comes from the graph input, or passes through an
op whose channel mapping is not exact (the reasons are kept).

Example: Conv A → BN → Relu → Conv B. A's output space holds A's weight axis 0 and bias (the
producer), BN's four vectors (per channel) and B's weight axis 1 (the consumer): one group.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

import numpy as np
import onnx

from .channels import GroupAttribute, ShapeConstant, Slot, TensorChannels
from .flops import ModelCost, count
from .flow import trace
from .load import LoadedModel
from .shapes import probe_shapes

__all__ = ["ChannelGroup", "GroupAnalysis", "find_groups", "analyze_groups", "after_slicing", "predict_shapes",
           "predict_cost", "axis_indices", "consumer_inputs"]


@dataclass(frozen=True)
class ChannelGroup:
    """Channels that are kept or dropped together, what one costs, and why it may be blocked."""

    id: int
    channels: int
    blocked: tuple[str, ...]  # reasons; empty means prunable
    exact: bool  # removing a channel equals zeroing it (no normalization across channels)
    producers: tuple[str, ...]  # node names that create these channels
    flops_per_channel: int = 0
    params_per_channel: int = 0

    @property
    def prunable(self) -> bool:
        return not self.blocked


@dataclass(frozen=True)
class GroupAnalysis:
    """Everything the selector and the slicer need to know about a model's channels."""

    groups: tuple[ChannelGroup, ...]
    slots: tuple[Slot, ...]
    shape_constants: tuple[ShapeConstant, ...]
    attributes: tuple[GroupAttribute, ...]
    tensors: dict[str, TensorChannels]  # segments are group ids
    shapes: dict[str, tuple[int, ...]]  # concrete shapes at batch 1
    cost: ModelCost
    trace_rank: tuple[int, ...] = ()  # each group's place in tracing order, which breaks numbering ties

    def group(self, gid: int) -> ChannelGroup:
        return self.groups[gid]

    @property
    def prunable(self) -> tuple[ChannelGroup, ...]:
        return tuple(g for g in self.groups if g.prunable)

    def prunable_flops_share(self) -> float:
        """FLOPs of MAC nodes with a prunable input or output group, over all FLOPs."""
        total = self.cost.flops
        if not total:
            return 0.0
        prunable = {g.id for g in self.prunable}
        touched = 0
        for node_cost, groups in zip(self.cost.nodes, self._node_groups()):
            if node_cost.macs and groups & prunable:
                touched += node_cost.flops
        return touched / total

    def _node_groups(self) -> list[set[int]]:
        by_node: dict[str, set[int]] = {}
        for slot in self.slots:
            by_node.setdefault(slot.node, set()).update(slot.segments)
        return [by_node.get(n.name, set()) for n in self.cost.nodes]


def _numbered(items: list[int], size: Callable[[int], int], rank: Callable[[int], int]) -> list[int]:
    """Groups in id order: largest first, so listings read naturally; ties in tracing order."""
    return sorted(items, key=lambda i: (-size(i), rank(i)))


def _resolve(ids: tuple[int, ...], gid_of: dict[int, int]) -> tuple[int, ...]:
    return tuple(gid_of[i] for i in ids)


def find_groups(
    model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], input_axes: dict[str, int] | None = None
) -> GroupAnalysis:
    """Trace channels through a normalized model; ``shapes`` come from ``shapes.probe_shapes``.

    ``input_axes`` names the channel axis of each graph input (default 1, NCHW).
    """
    found = trace(model, shapes, input_axes)
    spaces, tensors, slots, shape_consts, attrs = (found.spaces, found.tensors, found.slots,
                                                   found.shape_constants, found.attributes)
    in_trace_order = sorted({spaces.find(s) for s in range(len(spaces.parent))})
    rank = {r: i for i, r in enumerate(in_trace_order)}
    roots = _numbered(in_trace_order, lambda r: spaces.size[r], lambda r: rank[r])
    gid_of_root = {r: i for i, r in enumerate(roots)}
    gid_of = {s: gid_of_root[spaces.find(s)] for s in range(len(spaces.parent))}
    resolved_tensors = {
        name: TensorChannels(t.axis, _resolve(t.segments, gid_of), t.sizes, t.outer, t.inner)
        for name, t in tensors.items()
    }
    resolved_slots = tuple(
        Slot(s.initializer, s.axis, _resolve(s.segments, gid_of), s.sizes, s.outer, s.inner, s.role, s.node)
        for s in slots
    )
    resolved_consts = tuple(
        ShapeConstant(c.initializer, c.index, _resolve(c.segments, gid_of), c.sizes, c.factor)
        for c in shape_consts
    )
    resolved_attrs = tuple(
        GroupAttribute(a.node, a.name, _resolve(a.segments, gid_of), a.sizes) for a in attrs
    )
    base_cost = count(model, shapes)
    groups = []
    for root in roots:
        gid = gid_of_root[root]
        blocked = tuple(spaces.blocked.get(root, ()))
        if not any(gid in s.segments for s in resolved_slots if s.role == "producer") and not blocked:
            blocked = ("no initializer produces these channels",)
        groups.append(
            ChannelGroup(
                id=gid,
                channels=spaces.size[root],
                blocked=blocked,
                exact=not spaces.inexact.get(root),
                producers=tuple(dict.fromkeys(spaces.producers.get(root, ()))),
            )
        )
    analysis = GroupAnalysis(
        tuple(groups), resolved_slots, resolved_consts, resolved_attrs, resolved_tensors, shapes, base_cost,
        tuple(rank[r] for r in roots),
    )
    return _with_costs(model, analysis)


def analyze_groups(loaded: LoadedModel, shapes: dict[str, tuple[int, ...]] | None = None) -> GroupAnalysis:
    """Groups of a loaded model, at batch 1 and its input size (``shapes``: every tensor's, where
    the caller knows them; else onnxruntime runs the model once to find them)."""
    axes = {loaded.image.name: 1 if loaded.image.layout == "NCHW" else 3}
    return find_groups(loaded.model, shapes if shapes is not None else probe_shapes(loaded.model, loaded.image), axes)


def _with_costs(model: onnx.ModelProto, analysis: GroupAnalysis) -> GroupAnalysis:
    """Fill in the FLOPs and params one channel of each prunable group costs."""
    base = analysis.cost
    groups = []
    for g in analysis.groups:
        if g.prunable and g.channels > 1:
            cost = predict_cost(model, analysis, {g.id: g.channels - 1})
            g = ChannelGroup(g.id, g.channels, g.blocked, g.exact, g.producers,
                             base.flops - cost.flops, base.params - cost.params)
        groups.append(g)
    return GroupAnalysis(tuple(groups), analysis.slots, analysis.shape_constants, analysis.attributes,
                         analysis.tensors, analysis.shapes, base, analysis.trace_rank)


def after_slicing(sliced: onnx.ModelProto, analysis: GroupAnalysis, widths: Mapping[int, int]) -> GroupAnalysis:
    """The groups of ``sliced`` (``analysis``'s model with groups cut to ``widths`` channels),
    derived rather than traced again: slicing keeps every group, slot and link and changes only
    channel counts, so only sizes, shapes, costs and the numbering (``_numbered``) move. Equal
    to ``analyze_groups`` of ``sliced`` (``check_random_slice`` in tests/pruning_checks.py)."""
    size = {g.id: widths.get(g.id, g.channels) for g in analysis.groups}
    order = _numbered(list(size), size.__getitem__, analysis.trace_rank.__getitem__)
    new_id = {old: new for new, old in enumerate(order)}

    def ids(segments: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(new_id[s] for s in segments)

    def sizes(segments: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(size[s] for s in segments)

    groups = tuple(ChannelGroup(new_id[g.id], size[g.id], g.blocked, g.exact, g.producers)
                   for g in (analysis.group(old) for old in order))
    slots = tuple(replace(s, segments=ids(s.segments), sizes=sizes(s.segments)) for s in analysis.slots)
    constants = tuple(replace(c, segments=ids(c.segments), sizes=sizes(c.segments))
                      for c in analysis.shape_constants)
    attributes = tuple(replace(a, segments=ids(a.segments), sizes=sizes(a.segments)) for a in analysis.attributes)
    tensors = {name: replace(t, segments=ids(t.segments), sizes=sizes(t.segments))
               for name, t in analysis.tensors.items()}
    shapes = predict_shapes(analysis, dict(widths))
    derived = GroupAnalysis(groups, slots, constants, attributes, tensors, shapes, count(sliced, shapes),
                            tuple(analysis.trace_rank[old] for old in order))
    return _with_costs(sliced, derived)


def _new_extent(segments, sizes, outer, inner, widths: dict[int, int]) -> int:
    return outer * inner * sum(widths.get(g, n) for g, n in zip(segments, sizes))


def predict_shapes(
    analysis: GroupAnalysis, widths: dict[int, int]
) -> dict[str, tuple[int, ...]]:
    """Shapes after slicing every group to the given number of channels (others unchanged)."""
    shapes = dict(analysis.shapes)
    for name, t in analysis.tensors.items():
        if name in shapes and len(shapes[name]) > t.axis:
            dims = list(shapes[name])
            dims[t.axis] = _new_extent(t.segments, t.sizes, t.outer, t.inner, widths)
            shapes[name] = tuple(dims)
    for slot in analysis.slots:
        dims = list(shapes[slot.initializer])
        dims[slot.axis] = _new_extent(slot.segments, slot.sizes, slot.outer, slot.inner, widths)
        shapes[slot.initializer] = tuple(dims)
    return shapes


def predict_cost(model: onnx.ModelProto, analysis: GroupAnalysis, widths: dict[int, int]) -> ModelCost:
    """The exact cost of the model sliced to ``widths`` (group id → channels kept)."""
    return count(model, predict_shapes(analysis, widths))


def channel_positions(segments, sizes, keep: Mapping[int, np.ndarray]) -> np.ndarray:
    """Kept positions along a channel axis made of segments (before interleaving)."""
    parts, offset = [], 0
    for gid, n in zip(segments, sizes):
        idx = keep.get(gid)
        parts.append(offset + (np.arange(n) if idx is None else np.asarray(idx, dtype=np.int64)))
        offset += n
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def axis_indices(segments, sizes, outer: int, inner: int, keep: Mapping[int, np.ndarray]) -> np.ndarray:
    """Kept indices along an axis whose channels are interleaved by ``outer``/``inner``."""
    channels = sum(sizes)
    positions = channel_positions(segments, sizes, keep)
    grid = (
        np.arange(outer)[:, None, None] * channels * inner
        + positions[None, :, None] * inner
        + np.arange(inner)[None, None, :]
    )
    return grid.reshape(-1)


def consumer_inputs(model: onnx.ModelProto, analysis: GroupAnalysis) -> dict[str, list[str]]:
    """Every tensor a prunable group's consumer (the next Conv, Gemm, MatMul) reads, with the
    consumers that read it: where removing a channel shows (the criteria watch these tensors, the
    lossless pass takes their extremes, the bandit masks them at every consumer)."""
    read = {n.name: n.input[0] for n in model.graph.node if n.input}
    points: dict[str, list[str]] = {}
    for slot in analysis.slots:
        if slot.role == "consumer" and any(analysis.group(g).prunable for g in slot.segments):
            readers = points.setdefault(read[slot.node], [])
            if slot.node not in readers:
                readers.append(slot.node)
    return points
