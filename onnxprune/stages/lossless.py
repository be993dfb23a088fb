"""The lossless pass: channels the data never changes, removed before any pruning.

A channel that is zero wherever it is read (dead after its ReLU) is removed outright. A channel
that is one constant wherever it is read (a BatchNorm whose scale went to zero, a saturated
ReLU6 or Sigmoid) is removed and its contribution added to the bias of every consumer, where
that is exact: a Conv without padding (zero padding would make its border rows differ) and one
group, or a Gemm. Constant channels with any other consumer stay. Both are observed on the
calibration data; the caller checks the outputs are unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ..graph.channels import Slot, TensorChannels
from ..graph.groups import GroupAnalysis, analyze_groups, consumer_inputs
from ..graph.image_input import ImageInput
from ..graph.load import LoadedModel
from ..graph.nodes import attribute
from ..graph.ops import rule
from ..graph.slice import slice_groups
from .calibration import calibrate
from .select import round_up

__all__ = ["LosslessResult", "lossless_pass"]

# a channel is constant when max − min over all data and positions is within float32 rounding
_CONSTANT_RTOL = 1e-6


@dataclass(frozen=True)
class LosslessResult:
    model: onnx.ModelProto
    dead: int  # zero wherever read: removed
    folded: int  # constant wherever read: removed, folded into the consumers' biases
    constant_kept: int  # constant, but a consumer cannot absorb it (padding, MatMul, ...)
    groups: GroupAnalysis | None = None  # ``model``'s groups, where the pass knows them (not checkpointed)


Place = tuple[str, int, np.ndarray, np.ndarray]  # tensor read, offset of the group there, max, min


def _extremes(analysis: GroupAnalysis, observed: dict[str, np.ndarray]) -> dict[int, list[Place]]:
    """Per group, every place it is read: (tensor, offset of its channels there, max, min)."""
    places: dict[int, list[Place]] = {}
    for tensor, values in observed.items():
        layout = analysis.tensors[tensor]
        hi, lo = values[: layout.channels], -values[layout.channels :]
        offset = 0
        for gid, n in zip(layout.segments, layout.sizes):
            places.setdefault(gid, []).append((tensor, offset, hi[offset : offset + n], lo[offset : offset + n]))
            offset += n
    return places


def _absorbs(node: onnx.NodeProto, slot: Slot, inits: dict[str, onnx.TensorProto]) -> bool:
    """Whether a consumer can take a constant input channel into its bias exactly."""
    if slot.initializer != node.input[1] or not rule(node.op_type).absorbs_constant:
        return False
    if len(node.input) > 2 and node.input[2] and node.input[2] not in inits:
        return False  # a bias computed by the graph: nothing to fold into
    if node.op_type == "Conv":
        unpadded = attribute(node, "auto_pad", b"NOTSET") in (b"NOTSET", b"VALID")
        pads_free = unpadded and not any(attribute(node, "pads", []))
        return pads_free and attribute(node, "group", 1) == 1
    if node.op_type == "Gemm":
        return not attribute(node, "transA", 0) and attribute(node, "beta", 1.0) != 0
    return False


def _fold(model: onnx.ModelProto, analysis: GroupAnalysis, constants: dict[tuple[str, int], float]) -> bool:
    """Add Σ weight × constant to each consumer's bias, for the channels in ``constants`` (keyed by
    the tensor read and the channel's position in it). Returns whether a bias was created or
    changed shape (the groups must then be found again)."""
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    created = False
    done: set[tuple[str, int]] = set()
    for slot in analysis.slots:
        if slot.role != "consumer" or (slot.initializer, slot.axis) in done:
            continue
        done.add((slot.initializer, slot.axis))
        node = nodes[slot.node]
        channels = sum(slot.sizes)
        v = np.zeros(channels, np.float64)
        for position in range(channels):
            v[position] = constants.get((node.input[0], position), 0.0)
        if not v.any():
            continue
        stored = numpy_helper.to_array(inits[slot.initializer])
        weight = stored.astype(np.float64)
        along_axis = np.tile(np.repeat(v, slot.inner), slot.outer)
        contribution = np.tensordot(weight, along_axis, axes=([slot.axis], [0]))
        delta = contribution.reshape(contribution.shape[0], -1).sum(1)
        if node.op_type == "Gemm":
            delta = delta * attribute(node, "alpha", 1.0) / attribute(node, "beta", 1.0)
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(inits[node.input[2]])
            created |= bias.size != delta.size  # a broadcast Gemm C becomes one value per channel
            folded = (bias.astype(np.float64) + delta).astype(bias.dtype)
            inits[node.input[2]].CopyFrom(numpy_helper.from_array(folded, node.input[2]))
        else:
            name = f"{node.name or node.output[0]}.folded_bias"
            model.graph.initializer.append(numpy_helper.from_array(delta.astype(stored.dtype), name))
            while len(node.input) < 3:
                node.input.append("")
            node.input[2] = name
            created = True
    return created


def watched_tensors(model: onnx.ModelProto, analysis: GroupAnalysis) -> dict[str, TensorChannels]:
    """Every tensor a prunable group's consumer reads, with where its channels are: what the
    lossless pass needs the extremes of (``calibration.calibrate`` finds them)."""
    return {t: analysis.tensors[t] for t in consumer_inputs(model, analysis)}


def lossless_pass(model: onnx.ModelProto, image: ImageInput, analysis: GroupAnalysis, inputs: np.ndarray,
                  steps: dict[int, int], known: dict[str, np.ndarray] | None = None) -> LosslessResult:
    """Remove dead channels and fold constant ones, keeping widths on each group's step.
    ``known``: extremes the preparation's calibration pass already found (by tensor name);
    the rest are found on ``inputs``."""
    watched = watched_tensors(model, analysis)
    known = known or {}
    missing = {t: layout for t, layout in watched.items() if t not in known}
    observed = {t: known[t] for t in watched if t in known}
    if missing:
        observed |= calibrate(model, image.name, inputs, extremes=missing, shapes=analysis.shapes).extremes
    places = _extremes(analysis, observed)
    inits = {i.name: i for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    keep: dict[int, np.ndarray] = {}
    constants: dict[tuple[str, int], float] = {}
    dead_count = folded_count = kept_count = 0
    for group in analysis.prunable:
        if group.id not in places:
            continue
        constant = np.ones(group.channels, bool)
        dead = np.ones(group.channels, bool)
        for _, _, hi, lo in places[group.id]:
            constant &= (hi - lo) <= _CONSTANT_RTOL * np.maximum(np.abs(hi), np.abs(lo))
            dead &= (hi == 0) & (lo == 0)
        absorbable = all(_absorbs(nodes[s.node], s, inits) for s in analysis.slots
                         if s.role == "consumer" and group.id in s.segments)
        foldable = constant & ~dead & absorbable
        kept_count += int((constant & ~dead & ~absorbable).sum())
        removable = dead | foldable
        alive = np.flatnonzero(~removable)
        width = round_up(max(len(alive), 1), group.channels, steps.get(group.id, 1))
        if width >= group.channels:
            continue
        # keep a few removable channels where needed so widths stay on the step: dead ones first
        spare = np.concatenate([np.flatnonzero(dead), np.flatnonzero(foldable)])
        kept = np.sort(np.concatenate([alive, spare[: width - len(alive)]])).astype(np.int64)
        keep[group.id] = kept
        gone = np.setdiff1d(np.arange(group.channels), kept)
        dead_count += int(dead[gone].sum())
        for c in gone[foldable[gone]]:
            folded_count += 1
            for tensor, offset, hi, lo in places[group.id]:
                constants[(tensor, offset + int(c))] = float(hi[c] + lo[c]) / 2
    if not keep:
        return LosslessResult(model, 0, 0, kept_count, analysis)
    original, model = model, onnx.ModelProto()
    model.CopyFrom(original)
    if constants and _fold(model, analysis, constants):
        # a new bias belongs to its node's output group: find the groups again, by their producers
        by_producers = {frozenset(g.producers): g.id for g in analysis.groups}
        analysis = analyze_groups(LoadedModel(model, image, None))
        renamed = {g.id: by_producers[frozenset(g.producers)] for g in analysis.groups if g.producers}
        keep = {new: keep[old] for new, old in renamed.items() if old in keep}
    sliced, groups = slice_groups(model, image, analysis, keep)
    return LosslessResult(sliced, dead_count, folded_count, kept_count, groups)
