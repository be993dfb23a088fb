"""Turn observed signals or weights into one normalized score per channel of every group."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from ..groups import GroupAnalysis, Slot
from . import Recipe
from .parts import AGGREGATIONS, NORMALIZATIONS

__all__ = ["score_groups"]


def _segment_ranges(segments: tuple[int, ...], sizes: tuple[int, ...], gid: int):
    offset = 0
    for seg, n in zip(segments, sizes):
        if seg == gid:
            yield offset, offset + n
        offset += n


def _weight_rows(array: np.ndarray, slot: Slot, gid: int, order: int) -> list[np.ndarray]:
    """Per-channel L1/L2 norm of a producer's weights along the slot's axis."""
    moved = np.moveaxis(array, slot.axis, 0)
    channels = sum(slot.sizes)
    moved = moved.reshape(slot.outer, channels, slot.inner, -1).transpose(1, 0, 2, 3).reshape(channels, -1)
    norms = np.abs(moved).sum(1) if order == 1 else np.sqrt((moved**2).sum(1))
    return [norms[a:b] for a, b in _segment_ranges(slot.segments, slot.sizes, gid)]


def _weight_parts(recipe: Recipe, model: onnx.ModelProto, analysis: GroupAnalysis, gid: int) -> list[np.ndarray]:
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    parts: list[np.ndarray] = []
    for slot in analysis.slots:
        if gid not in slot.segments:
            continue
        node = nodes[slot.node]
        if recipe.signal in ("weight_l1", "weight_l2"):
            is_weight = slot.role == "producer" and slot.initializer == node.input[1]
            if is_weight:
                array = numpy_helper.to_array(inits[slot.initializer])
                parts += _weight_rows(array, slot, gid, 1 if recipe.signal == "weight_l1" else 2)
        elif recipe.signal == "bn_scale":
            if node.op_type == "BatchNormalization" and slot.initializer == node.input[1]:
                gamma = np.abs(numpy_helper.to_array(inits[slot.initializer]).reshape(-1))
                parts += [gamma[a:b] for a, b in _segment_ranges(slot.segments, slot.sizes, gid)]
    return parts


def score_groups(
    recipe: Recipe,
    model: onnx.ModelProto,
    analysis: GroupAnalysis,
    observed: dict[str, np.ndarray] | None = None,
    seed: int = 0,
) -> dict[int, np.ndarray]:
    """One score per channel for every prunable group; higher means more important."""
    rng = np.random.default_rng(seed)
    scores: dict[int, np.ndarray] = {}
    for group in analysis.prunable:
        gid = group.id
        if recipe.signal == "random":
            parts = [rng.random(group.channels)]
        elif recipe.needs_data:
            parts = []
            for tensor, values in (observed or {}).items():
                layout = analysis.tensors[tensor]
                parts += [values[a:b] for a, b in _segment_ranges(layout.segments, layout.sizes, gid)]
        else:
            parts = _weight_parts(recipe, model, analysis, gid)
            if not parts and recipe.signal == "bn_scale":  # no BatchNorm here: fall back to filter L2
                parts = _weight_parts(Recipe("weight_l2"), model, analysis, gid)
        raw = AGGREGATIONS[recipe.aggregate](parts) if parts else np.zeros(group.channels)
        scores[gid] = NORMALIZATIONS[recipe.normalize](np.asarray(raw, np.float64), group.flops_per_channel)
    return scores
