"""How channels flow through each ONNX op: the handlers behind ``groups.find_groups``.

One table maps op types to handlers. A handler reads its inputs' channel layouts and either
passes them on (activations, pooling, BN), opens a new space (Conv, Gemm, MatMul), joins spaces
(residual Add, squeeze-excite Mul), lays them side by side (Concat), or blocks them with a
reason when the op's channel mapping is not exact. Ops not in the table block what they touch.
"""

from __future__ import annotations

from collections.abc import Callable
from math import prod

import numpy as np
import onnx
from onnx import numpy_helper

from .channels import GroupAttribute, Role, ShapeConstant, Slot, Spaces, TensorChannels, Trace
from .nodes import attribute
from .ops import Tracing, rule

__all__ = ["trace", "HANDLERS"]

class _Tracer:
    """Walks the graph once in topological order, filling layouts, slots and spaces."""

    def __init__(self, model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], input_axes: dict[str, int]):
        self.model, self.shapes = model, shapes
        self.inits = {i.name: i for i in model.graph.initializer}
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.spaces = Spaces()
        self.tensors: dict[str, TensorChannels] = {}
        self.slots: list[Slot] = []
        self.consts: list[ShapeConstant] = []
        self.attrs: list[GroupAttribute] = []
        for name, axis in input_axes.items():
            size = shapes[name][axis]
            sid = self.spaces.new(size, blocked=f"comes straight from the graph input {name!r}")
            self.tensors[name] = TensorChannels(axis, (sid,), (size,))

    # -- helpers -------------------------------------------------------------------------
    def const(self, name: str) -> np.ndarray | None:
        init = self.inits.get(name) if name else None
        return None if init is None else numpy_helper.to_array(init)

    def rank(self, name: str) -> int:
        return len(self.shapes[name])

    def block(self, layout: TensorChannels | None, reason: str) -> None:
        for sid in layout.segments if layout else ():
            self.spaces.block(sid, reason)

    def fresh(self, out: str, axis: int, reason: str | None, producer: str | None = None) -> int | None:
        shape = self.shapes.get(out)
        if not shape or len(shape) <= axis:
            return None
        sid = self.spaces.new(shape[axis], producer=producer, blocked=reason)
        self.tensors[out] = TensorChannels(axis, (sid,), (shape[axis],))
        return sid

    def slot(self, init: str, axis: int, layout: TensorChannels, role: Role, node: onnx.NodeProto) -> None:
        self.slots.append(Slot(init, axis, layout.segments, layout.sizes, layout.outer, layout.inner,
                               role, node.name))

    def opaque(self, node: onnx.NodeProto, why: str) -> None:
        """Block every channel the node reads; its outputs carry blocked channels of their own."""
        for name in node.input:
            self.block(self.tensors.get(name), f"{node.op_type} {node.name!r} {why}")
        for out in node.output:
            if out and out in self.shapes and len(self.shapes[out]) >= 2:
                self.fresh(out, 1, f"produced by {node.op_type} {node.name!r}")

    def with_axis(self, layout: TensorChannels, axis: int, **changes) -> TensorChannels:
        return TensorChannels(axis, changes.get("segments", layout.segments),
                              changes.get("sizes", layout.sizes), changes.get("outer", layout.outer),
                              changes.get("inner", layout.inner))

    def per_channel_constant(self, name: str, layout: TensorChannels, out_rank: int,
                             node: onnx.NodeProto) -> bool:
        """Slot a constant broadcast against the channel axis; False if it cannot be sliced."""
        value = self.const(name)
        assert value is not None
        q = layout.axis - (out_rank - value.ndim)
        if q < 0 or value.shape[q] == 1:
            return True  # the same value for every channel
        if value.shape[q] == layout.channels * layout.outer * layout.inner:
            self.slot(name, q, layout, "per_channel", node)
            return True
        return False

    def segment_range(self, layout: TensorChannels, start: int, end: int) -> TensorChannels | None:
        """The segments covering channel positions [start, end), if it cuts none of them."""
        if layout.outer != 1 or layout.inner != 1:
            return None
        segs, sizes, offset = [], [], 0
        for sid, n in zip(layout.segments, layout.sizes):
            if start <= offset and offset + n <= end:
                segs.append(sid)
                sizes.append(n)
            elif offset < end and start < offset + n:
                return None
            offset += n
        return TensorChannels(layout.axis, tuple(segs), tuple(sizes)) if segs else None

    def join(self, a: TensorChannels, b: TensorChannels, node: onnx.NodeProto) -> bool:
        """Unite two layouts channel by channel; False when their segments do not line up."""
        if a.sizes != b.sizes or a.outer != b.outer or a.inner != b.inner:
            return False
        for x, y in zip(a.segments, b.segments):
            self.spaces.union(x, y)
        return True

    # -- handlers ------------------------------------------------------------------------
    def conv(self, node: onnx.NodeProto) -> None:
        x, w = node.input[0], node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        layout, weight = self.tensors.get(x), self.const(w)
        if weight is None or (bias and self.const(bias) is None):
            return self.opaque(node, "has weights computed at run time")
        group = attribute(node, "group", 1)
        c_in, c_out = self.shapes[x][1], weight.shape[0]
        flat = layout if layout is not None and layout.axis == 1 and layout.outer == layout.inner == 1 else None
        if group == 1:
            if flat is not None:
                self.slot(w, 1, flat, "consumer", node)
            else:
                self.block(layout, f"Conv {node.name!r} reads them on an unexpected axis")
            self.fresh(node.output[0], 1, None, producer=node.name)
            out = self.tensors[node.output[0]]
            self.slot(w, 0, out, "producer", node)
            if bias:
                self.slot(bias, 0, out, "producer", node)
            return None
        if group == c_in == c_out and flat is not None:  # depthwise: output channel i is input channel i
            self.tensors[node.output[0]] = flat
            self.slot(w, 0, flat, "per_channel", node)
            if bias:
                self.slot(bias, 0, flat, "per_channel", node)
            self.attrs.append(GroupAttribute(node.name, "group", flat.segments, flat.sizes))
            return None
        what = "depthwise Conv with a channel multiplier" if group == c_in else f"grouped Conv (group={group})"
        self.block(layout, f"read by {what} {node.name!r}")
        self.fresh(node.output[0], 1, f"produced by {what} {node.name!r}")
        return None

    def conv_transpose(self, node: onnx.NodeProto) -> None:
        x, w = node.input[0], node.input[1]
        bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
        layout = self.tensors.get(x)
        if self.const(w) is None or attribute(node, "group", 1) != 1 or layout is None or layout.axis != 1:
            return self.opaque(node, "is grouped, reads an unexpected axis or has run-time weights")
        self.slot(w, 0, layout, "consumer", node)
        self.fresh(node.output[0], 1, None, producer=node.name)
        out = self.tensors[node.output[0]]
        self.slot(w, 1, out, "producer", node)
        if bias:
            self.slot(bias, 0, out, "producer", node)
        return None

    def gemm(self, node: onnx.NodeProto) -> None:
        a, b = node.input[0], node.input[1]
        c = node.input[2] if len(node.input) > 2 and node.input[2] else None
        layout, weight = self.tensors.get(a), self.const(b)
        if weight is None or attribute(node, "transA", 0) or (c and self.const(c) is None):
            return self.opaque(node, "has run-time weights or a transposed input")
        k_axis, n_axis = (1, 0) if attribute(node, "transB", 0) else (0, 1)
        if layout is not None and layout.axis == 1 and layout.channels * layout.outer * layout.inner == weight.shape[k_axis]:
            self.slot(b, k_axis, layout, "consumer", node)
        else:
            self.block(layout, f"Gemm {node.name!r} reads them on an unexpected axis")
        self.fresh(node.output[0], 1, None, producer=node.name)
        out = self.tensors[node.output[0]]
        self.slot(b, n_axis, out, "producer", node)
        if c and not self.per_channel_constant(c, out, 2, node):
            self.spaces.block(out.segments[0], f"Gemm {node.name!r} has a bias of unexpected shape")
        return None

    def matmul(self, node: onnx.NodeProto) -> None:
        a, b = node.input[0], node.input[1]
        layout, weight = self.tensors.get(a), self.const(b)
        if weight is None or weight.ndim != 2:
            return self.opaque(node, "multiplies two run-time tensors")
        last = self.rank(a) - 1
        if layout is not None and layout.axis == last and layout.channels * layout.outer * layout.inner == weight.shape[0]:
            self.slot(b, 0, layout, "consumer", node)
        else:
            self.block(layout, f"MatMul {node.name!r} reads them on an unexpected axis")
        self.fresh(node.output[0], self.rank(node.output[0]) - 1, None, producer=node.name)
        self.slot(b, 1, self.tensors[node.output[0]], "producer", node)
        return None

    def recurrent(self, node: onnx.NodeProto) -> None:
        """LSTM and GRU read their input's last axis through W (D, gates·H, I), axis 2, so the
        channels feeding them are prunable with those columns; the hidden size stays."""
        layout, weight = self.tensors.get(node.input[0]), self.const(node.input[1])
        last = self.rank(node.input[0]) - 1
        if layout is not None:
            if (weight is not None and weight.ndim == 3 and layout.axis == last
                    and layout.channels * layout.outer * layout.inner == weight.shape[2]):
                self.slot(node.input[1], 2, layout, "consumer", node)
            else:
                self.block(layout, f"{node.op_type} {node.name!r} reads them on an unexpected axis")
        for name in node.input[2:]:
            self.block(self.tensors.get(name), f"{node.op_type} {node.name!r} keeps its hidden size")
        for out in node.output:
            if out and out in self.shapes:
                self.fresh(out, self.rank(out) - 1, f"produced by {node.op_type} {node.name!r} (its hidden size "
                           "is kept)")
        return None

    def per_channel_norm(self, node: onnx.NodeProto, params: range) -> None:
        layout = self.tensors.get(node.input[0])
        if layout is None or layout.axis != 1 or any(self.const(node.input[i]) is None for i in params):
            return self.opaque(node, "normalizes on an unexpected axis or has run-time parameters")
        for i in params:
            self.slot(node.input[i], 0, layout, "per_channel", node)
        self.tensors[node.output[0]] = layout
        return None

    def batch_norm(self, node: onnx.NodeProto) -> None:
        return self.per_channel_norm(node, range(1, 5))

    def instance_norm(self, node: onnx.NodeProto) -> None:
        return self.per_channel_norm(node, range(1, 3))

    def across_channels(self, node: onnx.NodeProto) -> None:
        """GroupNormalization and LRN: each channel's output depends on its neighbours'."""
        return self.opaque(node, "normalizes across channels")

    def along_axes(self, node: onnx.NodeProto, axes: list[int] | None, why: str) -> None:
        """Channels pass through unchanged unless the op works along the channel axis (``axes``)."""
        layout = self.tensors.get(node.input[0])
        if layout is None:
            return None
        rank = self.rank(node.input[0])
        if axes is None or layout.axis in {a % rank for a in axes}:
            return self.opaque(node, why)
        self.tensors[node.output[0]] = layout
        return None

    def lp_norm(self, node: onnx.NodeProto) -> None:
        return self.along_axes(node, [attribute(node, "axis", -1)], "normalizes across channels")

    def mean_variance_norm(self, node: onnx.NodeProto) -> None:
        return self.along_axes(node, list(attribute(node, "axes", [0, 2, 3])), "normalizes across channels")

    def cumsum(self, node: onnx.NodeProto) -> None:
        axis = self.const(node.input[1]) if len(node.input) > 1 else None
        axes = None if axis is None else axis.reshape(-1).tolist()
        return self.along_axes(node, axes, "sums along the channel axis (or a run-time axis)")

    def layer_norm(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        layout, rank = self.tensors.get(x), self.rank(x)
        if layout is None:
            return self.opaque(node, "has no channel layout")
        first = attribute(node, "axis", -1) % rank
        for name in node.input[1:3]:
            if name and (self.const(name) is None or not self.per_channel_constant(name, layout, rank, node)):
                return self.opaque(node, "has parameters of unexpected shape")
        if layout.axis >= first:
            for sid in layout.segments:
                self.spaces.mark_inexact(sid, f"LayerNormalization {node.name!r} normalizes over channels")
        self.tensors[node.output[0]] = layout
        return None

    def unary(self, node: onnx.NodeProto) -> None:
        layout = self.tensors.get(node.input[0])
        if node.op_type == "PRelu":
            return self.elementwise(node)
        if layout is not None:
            self.tensors[node.output[0]] = layout
        return None

    def elementwise(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        r = self.rank(out)
        channel_inputs, broadcast, constants, untracked = [], [], [], []
        for name in node.input:
            if not name:
                continue
            if self.const(name) is not None:
                constants.append(name)
                continue
            layout = self.tensors.get(name)
            if layout is None:
                untracked.append(name)
                continue
            axis = layout.axis + r - self.rank(name)
            if self.shapes[name][layout.axis] == self.shapes[out][axis]:
                channel_inputs.append((layout, axis))
            else:
                broadcast.append(layout)
        if not channel_inputs:
            return self.opaque(node, "combines tensors whose channels do not line up")
        primary, axis = channel_inputs[0]
        primary = self.with_axis(primary, axis)
        for layout, other_axis in channel_inputs[1:]:
            if other_axis != axis or not self.join(primary, layout, node):
                return self.opaque(node, "combines channels that do not line up")
        extent = self.shapes[out][axis]
        for name in untracked:
            q = axis - (r - self.rank(name))
            if q >= 0 and self.shapes[name][q] == extent and extent > 1:
                return self.opaque(node, "combines them with a tensor of unknown channel layout")
        for name in constants:
            if not self.per_channel_constant(name, primary, r, node):
                return self.opaque(node, "has a constant of unexpected shape")
        self.tensors[out] = primary
        return None

    def pool(self, node: onnx.NodeProto) -> None:
        layout = self.tensors.get(node.input[0])
        if layout is None or layout.axis != 1:
            return self.opaque(node, "pools on an unexpected axis")
        self.tensors[node.output[0]] = layout
        return None

    def resize(self, node: onnx.NodeProto) -> None:
        layout = self.tensors.get(node.input[0])
        if layout is None:
            return self.opaque(node, "has no channel layout")
        scales = self.const(node.input[2]) if len(node.input) > 2 else None
        if node.op_type == "Upsample" and len(node.input) > 1:
            scales = self.const(node.input[1])
        sizes = node.input[3] if len(node.input) > 3 and node.input[3] else None
        if scales is not None and scales.size and scales.reshape(-1)[layout.axis] != 1:
            return self.opaque(node, "rescales the channel axis")
        # Sizes computed at run time (Shape → Concat) follow the sliced tensor by themselves;
        # verification after slicing catches the rare graph that hard-codes a channel count there.
        if sizes and self.const(sizes) is not None:
            self.consts.append(ShapeConstant(sizes, layout.axis, layout.segments, layout.sizes,
                                             layout.outer * layout.inner))
        self.tensors[node.output[0]] = layout
        return None

    def pad(self, node: onnx.NodeProto) -> None:
        layout = self.tensors.get(node.input[0])
        pads = self.const(node.input[1]) if len(node.input) > 1 else np.asarray(attribute(node, "pads", []))
        rank = self.rank(node.input[0])
        if layout is None or pads is None or (len(node.input) > 3 and node.input[3]):
            return self.opaque(node, "pads with run-time or per-axis settings")
        pads = pads.reshape(-1)
        if pads.size == 2 * rank and (pads[layout.axis] or pads[layout.axis + rank]):
            return self.opaque(node, "pads the channel axis")
        self.tensors[node.output[0]] = layout
        return None

    def reduce(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        layout, rank = self.tensors.get(x), self.rank(x)
        axes = attribute(node, "axes")
        if axes is None and len(node.input) > 1 and node.input[1]:
            value = self.const(node.input[1])
            if value is None:
                return self.opaque(node, "reduces over run-time axes")
            axes = value.reshape(-1).tolist()
        if layout is None or not axes:
            return self.opaque(node, "reduces over every axis")
        axes = sorted(a % rank for a in axes)
        if layout.axis in axes:
            return self.opaque(node, "reduces over the channel axis")
        keep = attribute(node, "keepdims", 1)
        axis = layout.axis if keep else layout.axis - sum(a < layout.axis for a in axes)
        self.tensors[node.output[0]] = self.with_axis(layout, axis)
        return None

    def softmax(self, node: onnx.NodeProto) -> None:
        layout = self.tensors.get(node.input[0])
        rank = self.rank(node.input[0])
        axis = attribute(node, "axis", -1 if self.opset >= 13 else 1) % rank
        hits = layout is not None and (layout.axis == axis or (self.opset < 13 and layout.axis >= axis))
        if layout is None or hits:
            return self.opaque(node, "normalizes across channels")
        self.tensors[node.output[0]] = layout
        return None

    def transpose(self, node: onnx.NodeProto) -> None:
        layout = self.tensors.get(node.input[0])
        if layout is None:
            return None
        perm = attribute(node, "perm") or list(reversed(range(self.rank(node.input[0]))))
        self.tensors[node.output[0]] = self.with_axis(layout, list(perm).index(layout.axis))
        return None

    def reshape(self, node: onnx.NodeProto) -> None:
        x, out = node.input[0], node.output[0]
        layout = self.tensors.get(x)
        if layout is None:
            return None
        src, dst = self.shapes[x], self.shapes[out]
        p = layout.axis
        match = _merged_axis(src, dst, p)
        if match is None:
            return self.opaque(node, "splits or reorders the channel axis")
        q, a, b = match
        new = self.with_axis(layout, q, outer=layout.outer * prod(src[a:p]),
                             inner=layout.inner * prod(src[p + 1 : b + 1]))
        if node.op_type == "Reshape":
            target = self.const(node.input[1])
            if target is None:
                return self.opaque(node, "has a shape computed at run time")
            value = int(target.reshape(-1)[q])
            if value not in (-1, 0) or (value == 0 and (q != p or a != b)):
                self.consts.append(ShapeConstant(node.input[1], q, new.segments, new.sizes, new.outer * new.inner))
        self.tensors[out] = new
        return None

    def gather(self, node: onnx.NodeProto) -> None:
        """Picking along another axis (a time step of a sequence, ``seq[t]``) keeps the channels;
        the channel axis moves with the axes the indices add or take away. Picking channels blocks."""
        layout = self.tensors.get(node.input[0])
        if layout is None:
            return None
        indices = self.const(node.input[1])
        axis = attribute(node, "axis", 0) % self.rank(node.input[0])
        if indices is None or axis == layout.axis:
            return self.opaque(node, "picks along the channel axis" if indices is not None
                               else "picks with indices computed at run time")
        moved = layout.axis if layout.axis < axis else layout.axis - 1 + indices.ndim
        self.tensors[node.output[0]] = self.with_axis(layout, moved)
        return None

    def concat(self, node: onnx.NodeProto) -> None:
        out = node.output[0]
        axis = attribute(node, "axis", 0) % self.rank(out)
        found = [self.tensors.get(n) for n in node.input]
        layouts = [lay for lay in found if lay is not None]
        if len(layouts) < len(found):
            return self.opaque(node, "concatenates channels with constants or untracked tensors")
        if all(lay.axis == axis and lay.outer == lay.inner == 1 for lay in layouts):
            segs = tuple(s for lay in layouts for s in lay.segments)
            sizes = tuple(n for lay in layouts for n in lay.sizes)
            self.tensors[out] = TensorChannels(axis, segs, sizes)
            return None
        if all(lay.axis != axis for lay in layouts) and all(lay.axis == layouts[0].axis for lay in layouts):
            for lay in layouts[1:]:
                if not self.join(layouts[0], lay, node):
                    return self.opaque(node, "concatenates tensors whose channels do not line up")
            self.tensors[out] = layouts[0]
            return None
        return self.opaque(node, "concatenates channels on mixed axes")

    def split(self, node: onnx.NodeProto) -> None:
        x = node.input[0]
        layout = self.tensors.get(x)
        if layout is None:
            return None
        axis = attribute(node, "axis", 0) % self.rank(x)
        outs = [o for o in node.output]
        if axis != layout.axis:
            for o in outs:
                if o:
                    self.tensors[o] = layout
            return None
        start = 0
        for o in outs:
            end = start + self.shapes[o][axis]
            part = self.segment_range(layout, start, end)
            if part is None:
                return self.opaque(node, "splits the channel axis inside a group")
            self.tensors[o] = part
            start = end
        return None

    def slice_(self, node: onnx.NodeProto) -> None:
        x, out = node.input[0], node.output[0]
        layout = self.tensors.get(x)
        if layout is None:
            return None
        if attribute(node, "starts") is not None:  # before opset 10 the bounds are attributes
            values = [None if attribute(node, k) is None else np.asarray(attribute(node, k), np.int64)
                      for k in ("starts", "ends", "axes")] + [None]
        else:
            values = [self.const(n) if i < len(node.input) and n else None for i, n in enumerate(node.input[1:5])]
        starts, ends = values[0], values[1]
        if starts is None or ends is None or (len(node.input) > 3 and node.input[3] and values[2] is None) or \
                (len(node.input) > 4 and node.input[4] and values[3] is None):
            return self.opaque(node, "slices with run-time bounds")
        rank = self.rank(x)
        axes = values[2].reshape(-1).tolist() if len(values) > 2 and values[2] is not None else list(range(len(starts)))
        steps = values[3].reshape(-1).tolist() if len(values) > 3 and values[3] is not None else [1] * len(axes)
        for i, ax in enumerate(a % rank for a in axes):
            if ax != layout.axis:
                continue
            extent = self.shapes[x][ax]
            first = starts.reshape(-1)[i]
            start = int(np.clip(first % extent if first < 0 else first, 0, extent))
            part = self.segment_range(layout, start, start + self.shapes[out][ax]) if steps[i] == 1 else None
            if part is None:
                return self.opaque(node, "slices the channel axis inside a group")
            self.tensors[out] = part
            return None
        self.tensors[out] = layout
        return None

    def no_channels(self, node: onnx.NodeProto) -> None:
        return None


def _merged_axis(src: tuple[int, ...], dst: tuple[int, ...], p: int) -> tuple[int, int, int] | None:
    """(q, a, b) when output axis q is exactly input axes a..b merged, with a ≤ p ≤ b."""
    for a in range(p, -1, -1):
        if a < p and src[a] != 1 and prod(src[a:p]) == 0:
            break
        for b in range(p, len(src)):
            extent = prod(src[a : b + 1])
            for q in range(len(dst)):
                if dst[q] == extent and prod(dst[:q]) == prod(src[:a]):
                    return q, a, b
    return None


# each way of tracing (ops.OPS) and the _Tracer method that does it
HANDLERS: dict[Tracing, Callable[[_Tracer, onnx.NodeProto], None]] = {
    Tracing.CONV: _Tracer.conv,
    Tracing.CONV_TRANSPOSE: _Tracer.conv_transpose,
    Tracing.GEMM: _Tracer.gemm,
    Tracing.MATMUL: _Tracer.matmul,
    Tracing.RECURRENT: _Tracer.recurrent,
    Tracing.BATCH_NORM: _Tracer.batch_norm,
    Tracing.INSTANCE_NORM: _Tracer.instance_norm,
    Tracing.LAYER_NORM: _Tracer.layer_norm,
    Tracing.LP_NORM: _Tracer.lp_norm,
    Tracing.MEAN_VARIANCE_NORM: _Tracer.mean_variance_norm,
    Tracing.ACROSS_CHANNELS: _Tracer.across_channels,
    Tracing.UNARY: _Tracer.unary,
    Tracing.ELEMENTWISE: _Tracer.elementwise,
    Tracing.CUMSUM: _Tracer.cumsum,
    Tracing.POOL: _Tracer.pool,
    Tracing.REDUCE: _Tracer.reduce,
    Tracing.SOFTMAX: _Tracer.softmax,
    Tracing.RESIZE: _Tracer.resize,
    Tracing.RESHAPE: _Tracer.reshape,
    Tracing.TRANSPOSE: _Tracer.transpose,
    Tracing.CONCAT: _Tracer.concat,
    Tracing.SPLIT: _Tracer.split,
    Tracing.SLICE: _Tracer.slice_,
    Tracing.GATHER: _Tracer.gather,
    Tracing.PAD: _Tracer.pad,
    Tracing.NO_CHANNELS: _Tracer.no_channels,
}


def trace(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]],
          input_axes: dict[str, int] | None = None) -> Trace:
    """Follow channels through the graph; see ``groups.find_groups`` for what comes back."""
    if input_axes is None:
        inits = {i.name for i in model.graph.initializer}
        input_axes = {vi.name: 1 for vi in model.graph.input if vi.name not in inits and len(shapes.get(vi.name, ())) >= 2}
    tracer = _Tracer(model, shapes, input_axes)
    for node in model.graph.node:
        tracing = rule(node.op_type).trace
        if tracing is None:
            tracer.opaque(node, "has no channel mapping onnxprune knows")
        else:
            HANDLERS[tracing](tracer, node)
    for out in model.graph.output:
        tracer.block(tracer.tensors.get(out.name), f"reaches the graph output {out.name!r}")
    return Trace(tracer.spaces, tracer.tensors, tuple(tracer.slots), tuple(tracer.consts), tuple(tracer.attrs))
