"""The lossless pass: channels the data never changes, removed before any pruning.

A channel that is zero wherever it is read (dead after its ReLU) is removed outright. A channel
that is one constant wherever it is read (a BatchNorm whose scale went to zero, a saturated
ReLU6 or Sigmoid) is removed and its contribution added to the bias of every consumer, where
that is exact: a Conv without padding (zero padding would make its border rows differ) and one
group, or a Gemm. Constant channels with any other consumer stay. Both are observed on the
calibration data; ``remove_lossless`` is the stage: the pass on the run's work model, checked on a few calibration
images to change no output, and the torch view the rounds start from.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import onnx
from onnx import numpy_helper

from ..graph.channels import Slot, TensorChannels
from ..graph.groups import GroupAnalysis, analyze_groups, consumer_inputs
from ..graph.image_input import ImageInput
from ..graph.load import LoadedModel
from ..graph.nodes import attribute
from ..graph.ops import rule
from ..graph.runtime import run_batched
from ..graph.slice import slice_groups
from ..graph.tolerance import max_difference
from ..report import LosslessCounts
from ..torchview.view import TorchView
from .calibration import calibrate
from .context import Run
from .passes import Pass, PassState, Steps
from .planner import WidthPlan
from .select import round_up

__all__ = ["LOSSLESS", "LosslessResult", "lossless_pass", "remove_lossless"]

log = logging.getLogger(__name__)

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


LOSSLESS_CHECK_IMAGES = 8


def remove_lossless(run: Run, steps: dict[int, int], analysis: GroupAnalysis, start: onnx.ModelProto | None = None
                    ) -> tuple[TorchView, LosslessResult]:
    """The lossless pass (dead and constant channels), checked to change no output, and the torch
    view the rounds start from (imported once, after it, and checked against onnxruntime).
    ``start``: the work model with blocks removed (``analysis`` its groups), whose channels'
    extremes are measured again (removing a block changes every tensor after it). ``steps``: each
    group's width step, which the removals keep widths multiples of."""
    work, image = run.model.work.model if start is None else start, run.model.work.image
    freed = LosslessResult(work, 0, 0, 0, analysis)
    if run.options.lossless:
        extremes = run.data.calibration_extremes if start is None else calibrate(
            work, image.name, run.data.calibration, (), watched_tensors(work, analysis),
            shapes=analysis.shapes).extremes
        freed = lossless_pass(work, image, analysis, run.data.calibration, steps, extremes)
    if freed.dead or freed.folded:
        # the channels are dead or constant on every calibration image, so what can go wrong is
        # the removal itself (slicing, biases folded), and a few images show that: the same
        # tolerance as verification, against the model before the removal run the same way (the
        # teacher's outputs came in other batches: a deep attention reader's float32 noise
        # between those alone is above the tolerance)
        n = min(LOSSLESS_CHECK_IMAGES, len(run.data.calibration))
        check = run_batched(freed.model, image.name, run.data.calibration[:n], batch=n)
        diff, scale, same = max_difference(check, run_batched(work, image.name, run.data.calibration[:n], batch=n))
        if same:
            log.info("lossless pass: removed %d channels that are zero and folded %d that are constant on all "
                     "calibration data", freed.dead, freed.folded)
        else:  # a channel read somewhere the pass did not watch: prune by saliency alone, as with --no-lossless
            log.warning("lossless pass skipped: removing the %d dead and %d constant channels it found would change "
                        "the outputs by %.2g (of %.2g); the rounds prune by saliency alone", freed.dead, freed.folded,
                        diff, scale)
            freed = LosslessResult(work, 0, 0, 0, analysis)
    if freed.constant_kept:
        log.info("lossless pass: kept %d constant channels whose consumers cannot absorb them (padding)",
                 freed.constant_kept)
    return TorchView.of(freed.model, image, analysis=freed.groups), freed


def _lossless_stage(run: Run, plan: WidthPlan, state: PassState, steps: Steps) -> PassState:  # noqa: ARG001
    analysis = state.start_groups or run.model.work_groups
    view, freed = remove_lossless(run, plan.steps(analysis), analysis, state.start)
    return replace(state, view=view, freed=LosslessCounts(freed.dead, freed.folded, freed.constant_kept))


LOSSLESS = Pass("lossless pass", _lossless_stage, ensures=("view", "freed"))
