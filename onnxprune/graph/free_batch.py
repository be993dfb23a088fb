"""Free a fixed batch dimension; the written model gets it back (``output_axes.restore_signature``).

Both torch exporters fix the batch at 1 unless told otherwise, and constant folding then bakes
it into shape constants (a Reshape to [1, 144, -1]). Teacher runs, scoring, fine-tuning and
verification need any batch, so the graph is given a symbolic one internally: the image input,
the outputs that carry it, and the shape constants that name it. The freed graph must compute
what the original computes, sample by sample, or the model is refused; the written model gets
the user's signature back, so batch 1 in stays batch 1 out. Each output's batch axis is found
on the way (``output_axes``): it need not be the first.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import OnnxpruneError
from .image_input import ImageInput
from .output_axes import BatchAxis, find_output_axes
from .runtime import run_model
from .shapes import probe_shapes, random_input

__all__ = ["BATCH_NAME", "free_batch"]

log = logging.getLogger(__name__)

BATCH_NAME = "onnxprune_batch"  # a name no exporter uses, so restore_signature finds only ours


def free_batch(model: onnx.ModelProto, image: ImageInput, name: str
               ) -> tuple[onnx.ModelProto, tuple[BatchAxis, ...]]:
    """A copy of ``model`` whose batch is symbolic, and where its outputs have the batch;
    checked sample by sample against the original.

    Reshape targets that name the batch become 0 (copy the input's) or -1 (infer it); Expand
    targets that repeat a batch B > 1 become 1 (broadcast); a Resize to constant sizes takes
    its batch and channels from its input; a strided view on a batch of 1 (Reshape to [-1] and
    Gather) is taken per sample. Anything else that fixes the batch shows up in the
    check, which refuses the model with one line.
    """
    fixed = image.static_batch
    if fixed is None:
        return model, find_output_axes(model, image, name)
    shapes = probe_shapes(model, image, batch=fixed)
    freed = onnx.ModelProto()
    freed.CopyFrom(model)
    graph = freed.graph
    _set_batch_dim(graph.input, {image.name}, fixed)
    for out in graph.output:  # found anew below: the output's batch may be on any axis
        out.type.tensor_type.ClearField("shape")
    del graph.value_info[:]  # they hold the fixed shapes; shape inference writes them anew
    edited = _free_shape_constants(freed, shapes, fixed)
    try:
        axes = find_output_axes(freed, image, name, fixed, reference=model,
                                refusal=lambda why: _refusal(name, fixed, why))
    except BatchRefused as refused:
        if fixed != 1:
            raise
        return model, one_at_a_time(model, image, name, refused.reason)
    for out, where in zip(graph.output, axes):
        dims = out.type.tensor_type.shape.dim
        for size in (*where.rest[:where.axis], -1, *where.rest[where.axis:]) if where.fold == 1 else ():
            dim = dims.add()
            if size < 0:
                dim.dim_param = BATCH_NAME
            else:
                dim.dim_value = size
    log.info("the file fixes its batch at %d: onnxprune works on a free batch (%d shape constant(s) "
             "rewritten) and writes the model back with batch %d", fixed, edited, fixed)
    return freed, axes


def one_at_a_time(model: onnx.ModelProto, image: ImageInput, name: str, reason: str) -> tuple[BatchAxis, ...]:
    """The outputs of a file whose batch stays fixed at 1, as one sample's results: nothing needs a
    free batch, since onnxruntime runs the file one input at a time (``runtime.make_session``) and
    torch fine-tunes in micro-batches of 1. An output's batch is its first axis of size 1 (a
    reader's (T, 1, C) is sequence-first); one with none is that sample's result whole (a fold of
    its first axis)."""
    outputs = run_model(model, {image.name: random_input(image.shape(1), seed=1)})
    axes = []
    for out, value in zip(model.graph.output, outputs):
        shape = tuple(np.shape(value))
        if not shape:
            raise OnnxpruneError(f"{name}: output {out.name!r} is a scalar; onnxprune needs one result per sample")
        ones = [k for k, size in enumerate(shape) if size == 1]
        axes.append(BatchAxis(ones[0], 1, shape[:ones[0]] + shape[ones[0] + 1:]) if ones
                    else BatchAxis(0, shape[0], shape))
    log.info("the file fixes its batch at 1 and it cannot be freed (%s): onnxprune runs it one input at a time "
             "and fine-tunes in micro-batches of 1, accumulating gradients to --batch-size", reason)
    return tuple(axes)


class BatchRefused(OnnxpruneError):
    """A fixed batch that could not be freed, and why (``reason``)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _refusal(name: str, fixed: int, reason: str) -> OnnxpruneError:
    return BatchRefused(
        f"{name} fixes its batch at {fixed} and onnxprune could not free it ({reason}); export it with a "
        "dynamic batch (torch: dynamic_axes={input: {0: 'batch'}} or dynamic_shapes)", reason)


def _set_batch_dim(values, names: set[str], fixed: int) -> None:
    for vi in values:
        if vi.name not in names:
            continue
        dims = vi.type.tensor_type.shape.dim
        if len(dims) and dims[0].HasField("dim_value") and dims[0].dim_value == fixed:
            dims[0].Clear()
            dims[0].dim_param = BATCH_NAME


def _free_shape_constants(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], fixed: int) -> int:
    """Rewrite the Reshape and Expand targets that name the batch; returns how many changed."""
    inits = {init.name: init for init in model.graph.initializer}
    constants = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    edited = 0
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    batch_axes: dict[str, int] | None = None  # from shape inference; made again where an edit reaches
    changed_since: set[str] = set()  # tensors downstream of the edits made since it was made

    def edited_at(node: onnx.NodeProto) -> None:
        changed_since.update(_downstream(node, consumers))

    for node in list(model.graph.node):
        if node.op_type == "Reshape" and len(node.input) > 1:
            if batch_axes is None or node.input[0] in changed_since:
                batch_axes, changed_since = _symbolic_batch_axes(model), set()
            if batch_axes.get(node.input[0], 0) > 0:
                changed = _inner_batch_reshape(node, batch_axes[node.input[0]], shapes, fixed, inits, constants, model)
                edited += changed
                if changed:
                    edited_at(node)
                continue
        other = None
        if node.op_type == "Gather" and fixed == 1:
            other = _strided_gather_follows_batch(node, inits, constants, consumers, shapes, model)
        elif node.op_type == "Resize":
            other = _resize_follows_batch(model, node, inits, constants, shapes, fixed)
        elif node.op_type in ("LSTM", "GRU", "RNN"):
            other = _zero_state_follows_batch(node, inits, constants, fixed)
        if other is not None:
            edited += other
            if other:
                edited_at(node)
            continue
        if node.op_type not in ("Reshape", "Expand") or len(node.input) < 2:
            continue
        target = _constant(node.input[1], inits, constants)
        if target is None or target.ndim != 1 or not len(target):
            continue
        batch_first = shapes.get(node.input[0], (0,))[:1] == (fixed,)
        new = target.copy()
        if node.op_type == "Reshape":
            allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
            if -1 not in new and new[0] % fixed == 0 and new[0] > 0:
                # infer it: the same value at the fixed batch (the other axes are constants),
                # and right where the batch leads, flattened into the first axis or not
                new[0] = -1
            elif new[0] == fixed and batch_first and (not allowzero or 0 not in new):
                new[0] = 0  # copy the input's first axis
                _clear_allowzero(node)  # it only changes what a 0 means, and there was none
        elif node.op_type == "Expand" and fixed > 1 and new[0] == fixed and batch_first:
            new[0] = 1
        if not np.array_equal(new, target):
            _set_constant(node, 1, new, inits, constants, model)
            edited += 1
            edited_at(node)  # the batch now flows further: inferred again where it reaches
    return edited


def _downstream(node: onnx.NodeProto, consumers: dict[str, list[onnx.NodeProto]]) -> set[str]:
    """Every tensor computed from ``node``'s outputs: all an edit of it can change the shape of."""
    seen: set[str] = set()
    pending = [o for o in node.output if o]
    while pending:
        tensor = pending.pop()
        if tensor in seen:
            continue
        seen.add(tensor)
        for consumer in consumers.get(tensor, []):
            pending.extend(o for o in consumer.output if o)
    return seen


def _symbolic_batch_axes(model: onnx.ModelProto) -> dict[str, int]:
    """Tensor → the axis that holds the freed batch, where shape inference can follow it."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # inference gives up on some graphs: then no inner batch is rewritten
        return {}
    axes = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input):
        for k, dim in enumerate(vi.type.tensor_type.shape.dim):
            if dim.dim_param == BATCH_NAME:
                axes[vi.name] = k
                break
    return axes


def _inner_batch_reshape(node: onnx.NodeProto, axis: int, shapes: dict[str, tuple[int, ...]], fixed: int,
                         inits: dict, constants: dict, model: onnx.ModelProto) -> int:
    """A Reshape of a tensor whose batch is not its first axis (a sequence-first (T, N, C)):
    the batch lands where the output's leading dims hold as many values as the input's dims
    before the batch (a Reshape keeps row-major order), and becomes -1 there. Returns 1 if changed."""
    source, result = shapes.get(node.input[0]), shapes.get(node.output[0])
    target = _constant(node.input[1], inits, constants)
    if source is None or result is None or target is None or target.ndim != 1 or len(target) != len(result):
        return 0
    before = int(np.prod(source[:axis]))
    places = [k for k in range(len(result)) if int(np.prod(result[:k])) == before and result[k] % fixed == 0]
    if not places:
        return 0
    k = next((p for p in places if result[p] == fixed), places[0])
    new = np.asarray(result, dtype=np.int64)
    new[k] = -1
    if np.array_equal(new, target):
        return 0
    _set_constant(node, 1, new, inits, constants, model)
    _clear_allowzero(node)  # the new target holds no 0
    return 1


def _zero_state_follows_batch(node: onnx.NodeProto, inits: dict, constants: dict, fixed: int) -> int:
    """A recurrent layer's initial state baked as zeros of the fixed batch, (D, B, H), is the
    default state: the input is left out, which is zeros at any batch. Returns how many changed."""
    edited = 0
    for index in (5, 6):  # initial_h, initial_c
        if len(node.input) <= index or not node.input[index]:
            continue
        state = _constant(node.input[index], inits, constants)
        if state is not None and state.ndim == 3 and state.shape[1] == fixed and not state.any():
            node.input[index] = ""
            edited += 1
    while node.input and not node.input[-1]:
        del node.input[-1]
    return edited


def _clear_allowzero(node: onnx.NodeProto) -> None:
    kept = [a for a in node.attribute if a.name != "allowzero"]
    del node.attribute[:]
    node.attribute.extend(kept)


def _strided_gather_follows_batch(node: onnx.NodeProto, inits: dict, constants: dict,
                                  consumers: dict[str, list[onnx.NodeProto]], shapes: dict[str, tuple[int, ...]],
                                  model: onnx.ModelProto) -> int:
    """torch's dynamo exporter writes ``as_strided`` on a batch of 1 as Reshape(x, [-1]) → Gather
    with constant indices of shape (1, …). Per sample instead: Reshape(x, [0, -1]) → Gather on
    axis 1 with the indices of that one sample. Returns 1 if changed."""
    producer = next((n for n in model.graph.node if node.input[0] in n.output), None)
    if (producer is None or producer.op_type != "Reshape" or len(consumers.get(node.input[0], [])) != 1
            or shapes.get(producer.input[0], (0,))[:1] != (1,) or any(a.name == "axis" and a.i for a in node.attribute)):
        return 0
    target = _constant(producer.input[1], inits, constants)
    indices = _constant(node.input[1], inits, constants)
    if target is None or indices is None or target.tolist() != [-1] or indices.ndim < 1 or indices.shape[0] != 1:
        return 0
    _set_constant(producer, 1, np.array([0, -1]), inits, constants, model)
    _set_constant(node, 1, indices.reshape(indices.shape[1:]), inits, constants, model)
    del node.attribute[:]
    node.attribute.append(onnx.helper.make_attribute("axis", 1))
    return 1


def _resize_follows_batch(model: onnx.ModelProto, node: onnx.NodeProto, inits: dict, constants: dict,
                          shapes: dict[str, tuple[int, ...]], fixed: int) -> int:
    """A Resize to constant ``sizes`` that name the batch takes its first two sizes from its
    input instead (Shape → Slice → Concat), which is exact at any batch; returns 1 if changed."""
    if len(node.input) < 4 or not node.input[3] or shapes.get(node.input[0], (0,))[:1] != (fixed,):
        return 0
    sizes = _constant(node.input[3], inits, constants)
    if sizes is None or sizes.ndim != 1 or len(sizes) < 3 or sizes[0] != fixed:
        return 0
    base = f"{node.name}/free_batch"
    tail = numpy_helper.from_array(sizes[2:].astype(np.int64), f"{base}/spatial")
    starts = numpy_helper.from_array(np.array([0], np.int64), f"{base}/starts")
    ends = numpy_helper.from_array(np.array([2], np.int64), f"{base}/ends")
    model.graph.initializer.extend([tail, starts, ends])
    new_nodes = [
        onnx.helper.make_node("Shape", [node.input[0]], [f"{base}/shape"], name=f"{base}/Shape"),
        onnx.helper.make_node("Slice", [f"{base}/shape", starts.name, ends.name], [f"{base}/leading"],
                              name=f"{base}/Slice"),
        onnx.helper.make_node("Concat", [f"{base}/leading", tail.name], [f"{base}/sizes"], name=f"{base}/Concat",
                              axis=0),
    ]
    position = list(model.graph.node).index(node)
    for offset, new in enumerate(new_nodes):
        model.graph.node.insert(position + offset, new)
    node.input[3] = f"{base}/sizes"
    return 1


def _constant(name: str, inits: dict, constants: dict) -> np.ndarray | None:
    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = constants.get(name)
    if node is not None:
        for attr in node.attribute:
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
    return None


def _set_constant(node: onnx.NodeProto, index: int, value: np.ndarray, inits: dict, constants: dict,
                  model: onnx.ModelProto) -> None:
    """Make the node's constant input hold ``value``: its initializer in place (``normalize``
    gave every use its own), or a new one where a Constant node held it."""
    old = node.input[index]
    if old in inits:
        inits[old].CopyFrom(numpy_helper.from_array(value.astype(np.int64), old))
        return
    new_name = f"{old}__free_batch"
    while new_name in inits:
        new_name += "_"
    tensor = numpy_helper.from_array(value.astype(np.int64), new_name)
    model.graph.initializer.append(tensor)
    inits[new_name] = tensor
    node.input[index] = new_name
