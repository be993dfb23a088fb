"""The one slicer: removes channels from an ONNX model, given a keep-set per channel group.

``take`` is the only code in onnxprune that drops channels. Every round of pruning and the final
rewrite go through ``slice_model``; the torch view is re-imported from its result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import OnnxpruneError
from .channels import Slot
from .groups import GroupAnalysis, after_slicing, analyze_groups, axis_indices
from .image_input import ImageInput
from .load import LoadedModel
from .ops import rule

__all__ = ["take", "slice_model", "slice_groups", "zero_channels", "check_keep"]


def take(array: np.ndarray, indices: np.ndarray, axis: int) -> np.ndarray:
    """Keep ``indices`` along ``axis``: the single place channels are dropped."""
    return np.take(array, np.asarray(indices, dtype=np.int64), axis=axis)


def check_keep(analysis: GroupAnalysis, keep: Mapping[int, np.ndarray]) -> dict[int, np.ndarray]:
    """Sorted, unique, in range, non-empty, and only for prunable groups — or an error."""
    checked = {}
    for gid, indices in keep.items():
        if not 0 <= gid < len(analysis.groups):
            raise OnnxpruneError(f"keep-set names group {gid}, but the model has {len(analysis.groups)}")
        group = analysis.groups[gid]
        idx = np.unique(np.asarray(indices, dtype=np.int64))
        if idx.size == len(np.asarray(indices).reshape(-1)) and idx.size == group.channels and group.blocked:
            continue  # keeping all of a blocked group is no change
        if group.blocked:
            raise OnnxpruneError(f"group {gid} is blocked ({group.blocked[0]}) and cannot lose channels")
        if idx.size == 0 or idx[0] < 0 or idx[-1] >= group.channels:
            raise OnnxpruneError(f"keep-set for group {gid} must hold 1..{group.channels} indices in range")
        checked[gid] = idx
    return checked


def slice_groups(model: onnx.ModelProto, image: ImageInput, analysis: GroupAnalysis,
                 keep: Mapping[int, np.ndarray]) -> tuple[onnx.ModelProto, GroupAnalysis]:
    """``slice_model``, and the sliced model's groups for the next round: derived from
    ``analysis`` (``groups.after_slicing``), not traced and probed again — except where a group
    is cut to one channel, which changes what the graph means (an axis of one broadcasts; a
    one-channel depthwise conv is a plain conv), so the sliced model is traced."""
    keep = check_keep(analysis, keep)
    sliced = slice_model(model, analysis, keep)
    widths = {gid: len(kept) for gid, kept in keep.items()}
    if 1 in widths.values():
        return sliced, analyze_groups(LoadedModel(sliced, image, None))
    return sliced, after_slicing(sliced, analysis, widths)


def zero_channels(
    model: onnx.ModelProto, analysis: GroupAnalysis, keep: Mapping[int, np.ndarray]
) -> onnx.ModelProto:
    """Soft pruning: a copy whose dropped channels are switched off but still there to regrow.

    The producers' weights and biases, per-channel additive and multiplicative constants and
    BatchNormalization's scale and shift of every channel outside the keep-sets are set to zero
    (Soft Filter Pruning, He et al. 2018); shapes do not change. ``slice_model`` removes them for
    good at the end.
    """
    keep = check_keep(analysis, keep)
    zeroed = onnx.ModelProto()
    zeroed.CopyFrom(model)
    # biases (a Gemm's C is per channel), additive and multiplicative constants, BN's γ and β;
    # never BN statistics or a divisor: ``ops.OPS``'s soft_zero_inputs
    zeroable = {n.input[i] for n in zeroed.graph.node for i in rule(n.op_type).soft_zero_inputs
                if i < len(n.input) and n.input[i]}

    def switch_off(slot: Slot, array: np.ndarray, kept: np.ndarray) -> np.ndarray:
        off = slot.role == "producer" or (slot.role == "per_channel" and slot.initializer in zeroable)
        if not off:
            return array
        array = array.copy()
        index: list[slice | np.ndarray] = [slice(None)] * array.ndim
        index[slot.axis] = np.setdiff1d(np.arange(array.shape[slot.axis]), kept)
        array[tuple(index)] = 0
        return array

    _edit_slots(zeroed, analysis, keep, switch_off)
    return zeroed


def _edit_slots(model: onnx.ModelProto, analysis: GroupAnalysis, keep: Mapping[int, np.ndarray],
                edit: Callable[[Slot, np.ndarray, np.ndarray], np.ndarray]) -> None:
    """Apply ``edit(slot, array, kept indices along the slot's axis)`` to every initializer axis of
    the groups in ``keep``, once per axis, and store the results in ``model``."""
    inits = {init.name: init for init in model.graph.initializer}
    arrays: dict[str, np.ndarray] = {}
    done: set[tuple[str, int]] = set()
    for slot in analysis.slots:
        if (slot.initializer, slot.axis) in done or not set(slot.segments) & keep.keys():
            continue
        done.add((slot.initializer, slot.axis))
        array = arrays.get(slot.initializer)
        if array is None:
            array = numpy_helper.to_array(inits[slot.initializer])
        kept = axis_indices(slot.segments, slot.sizes, slot.outer, slot.inner, keep)
        arrays[slot.initializer] = edit(slot, array, kept)
    for name, array in arrays.items():
        inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), name))


def slice_model(
    model: onnx.ModelProto, analysis: GroupAnalysis, keep: Mapping[int, np.ndarray], annotate: bool = True
) -> onnx.ModelProto:
    """A new model with every member of every group sliced to its keep-set.

    Weights, biases, BN parameters and statistics, per-channel constants, depthwise ``group``
    attributes and Reshape/Resize constants that state a channel count all follow; node names,
    opset, metadata and graph inputs/outputs are kept; intermediate shape annotations are
    re-inferred (unless ``annotate`` is false: a model only timed needs none). Initializers must
    not be shared between users (``load`` un-shares them).
    """
    keep = check_keep(analysis, keep)
    sliced = onnx.ModelProto()
    sliced.CopyFrom(model)
    _edit_slots(sliced, analysis, keep, lambda slot, array, kept: take(array, kept, slot.axis))
    inits = {init.name: init for init in sliced.graph.initializer}
    constants: dict[str, np.ndarray] = {}
    for const in analysis.shape_constants:
        if not set(const.segments) & keep.keys():
            continue
        array = constants.get(const.initializer)
        if array is None:
            array = numpy_helper.to_array(inits[const.initializer]).copy()
        kept = sum(len(keep[g]) if g in keep else n for g, n in zip(const.segments, const.sizes))
        array.reshape(-1)[const.index] = const.factor * kept
        constants[const.initializer] = array
    for name, array in constants.items():
        inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), name))
    nodes = {node.name: node for node in sliced.graph.node}
    for attr in analysis.attributes:
        if set(attr.segments) & keep.keys():
            kept = sum(len(keep[g]) if g in keep else n for g, n in zip(attr.segments, attr.sizes))
            for a in nodes[attr.node].attribute:
                if a.name == attr.name:
                    a.i = kept
    del sliced.graph.value_info[:]
    if not annotate:
        return sliced
    try:
        sliced = onnx.shape_inference.infer_shapes(sliced, data_prop=True)
    except Exception as err:  # pragma: no cover - the checker in verify reports it properly
        raise OnnxpruneError(f"the sliced model fails shape inference: {err}") from err
    return sliced
