"""onnx2torch converters for the forms older exporters and other frameworks' converters write:
``auto_pad`` SAME_UPPER / SAME_LOWER (TF/Keras converters), BatchNormalization before opset 9
(``spatial``, ``is_test``) and Upsample (opsets 7 and 9).

SAME padding depends on the input's size, so it is computed in ``forward`` from the tensor at
hand: a model with a symbolic height and width stays right at every size, and the ONNX node
keeps its ``auto_pad`` (the written file is the user's graph, sliced, nothing more).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import onnx
import torch
from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, get_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult
from torch import nn
from torch.nn import functional as F

__all__ = ["SamePad", "register_legacy_converters"]

Converter = Callable[[OnnxNode, OnnxGraph], OperationConverterResult]
_PADDED_OPS = ("Conv", "ConvTranspose", "MaxPool", "AveragePool")


def same_pads(size: int, kernel: int, stride: int, dilation: int, upper: bool) -> tuple[int, int]:
    """(begin, end) padding that makes a window op's output ceil(size / stride) long; the odd
    pixel goes at the end for SAME_UPPER and at the beginning for SAME_LOWER (ONNX's rule)."""
    span = (kernel - 1) * dilation + 1
    total = max(0, (math.ceil(size / stride) - 1) * stride + span - size)
    begin = total // 2 if upper else total - total // 2
    return begin, total - begin


class SamePad(nn.Module):
    """Pads the spatial axes as ``auto_pad=SAME_*`` asks, for the input's own size."""

    def __init__(self, kernel: list[int], strides: list[int], dilations: list[int], upper: bool,
                 value: float = 0.0) -> None:
        super().__init__()
        self.kernel, self.strides, self.dilations = kernel, strides, dilations
        self.upper, self.value = upper, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads: list[int] = []
        for axis in reversed(range(len(self.kernel))):  # F.pad lists the last axis first
            pads.extend(same_pads(x.shape[2 + axis], self.kernel[axis], self.strides[axis],
                                  self.dilations[axis], self.upper))
        return F.pad(x, pads, value=self.value)


class ExcludePadAverage(nn.Module):
    """Average pooling over a SAME-padded input that divides by the real pixels only
    (``count_include_pad=0``, ONNX's default): the window sums over the window's pixel counts."""

    def __init__(self, pad: SamePad, pool: nn.Module) -> None:
        super().__init__()
        self.pad, self.pool = pad, pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(x[:1, :1])
        return self.pool(self.pad(x)) / self.pool(self.pad(ones))


class CropSame(nn.Module):
    """ConvTranspose with SAME padding: the full (unpadded) output cropped to input × stride."""

    def __init__(self, conv: nn.Module, strides: list[int], upper: bool) -> None:
        super().__init__()
        self.conv, self.strides, self.upper = conv, strides, upper

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        full = self.conv(x)
        index: list[slice] = [slice(None), slice(None)]
        for axis, stride in enumerate(self.strides):
            want = x.shape[2 + axis] * stride
            total = full.shape[2 + axis] - want
            # ONNX's ConvTranspose puts the larger half at the end for SAME_UPPER
            begin = total // 2 if self.upper else total - total // 2
            index.append(slice(begin, begin + want))
        return full[tuple(index)]


def _without_auto_pad(node: OnnxNode) -> OnnxNode:
    """The same node with no padding at all (``auto_pad`` and ``pads`` removed)."""
    proto = onnx.NodeProto()
    proto.CopyFrom(node.proto)
    kept = [a for a in proto.attribute if a.name not in ("auto_pad", "pads")]
    del proto.attribute[:]
    proto.attribute.extend(kept)
    return OnnxNode(proto, node.unique_name)


def _spatial_rank(node: OnnxNode, graph: OnnxGraph) -> int:
    if "kernel_shape" in node.attributes:
        return len(node.attributes["kernel_shape"])
    return len(graph.initializers[node.input_values[1]].to_torch().shape) - 2


def _with_same_padding(inner: Converter) -> Converter:
    """Wrap an onnx2torch converter of a windowed op so that SAME_* auto_pad works."""

    def convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        auto_pad = node.attributes.get("auto_pad", "NOTSET")
        if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
            return inner(node, graph)
        rank = _spatial_rank(node, graph)
        op, upper = node.operation_type, auto_pad == "SAME_UPPER"
        kernel = list(node.attributes.get("kernel_shape") or
                      graph.initializers[node.input_values[1]].to_torch().shape[2:])
        strides = list(node.attributes.get("strides", [1] * rank))
        dilations = list(node.attributes.get("dilations", [1] * rank))
        base = inner(_without_auto_pad(node), graph)
        module = base.torch_module
        if op == "ConvTranspose":
            if any(node.attributes.get("output_padding", [0] * rank)) or "output_shape" in node.attributes:
                raise NotImplementedError("ConvTranspose with auto_pad SAME and output_padding/output_shape")
            wrapped: nn.Module = CropSame(module, strides, upper)
        elif op == "MaxPool":
            wrapped = nn.Sequential(SamePad(kernel, strides, dilations, upper, float("-inf")), module)
        elif op == "AveragePool" and not node.attributes.get("count_include_pad", 0):
            wrapped = ExcludePadAverage(SamePad(kernel, strides, dilations, upper), module)
        else:
            wrapped = nn.Sequential(SamePad(kernel, strides, dilations, upper), module)
        return OperationConverterResult(torch_module=wrapped, onnx_mapping=base.onnx_mapping)

    return convert


class Upsample(nn.Module):
    """ONNX Upsample (opsets 7-9): nearest or (bi)linear with constant per-axis scales, batch
    and channel scales 1."""

    def __init__(self, scales: list[float], mode: str) -> None:
        super().__init__()
        self.scales, self.mode = scales, mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = [int(math.floor(x.shape[2 + i] * s)) for i, s in enumerate(self.scales[2:])]
        if self.mode == "nearest":
            return F.interpolate(x, size=size, mode="nearest")
        # Upsample's linear mode samples the input at out / scale ("asymmetric" in Resize's
        # terms), which no torch mode does: interpolate one axis at a time
        for axis, scale in enumerate(self.scales[2:], start=2):
            x = _linear_along(x, axis, scale)
        return x


def _linear_along(x: torch.Tensor, axis: int, scale: float) -> torch.Tensor:
    size = x.shape[axis]
    position = torch.arange(int(math.floor(size * scale)), device=x.device, dtype=x.dtype) / scale
    low = position.floor().clamp(max=size - 1)
    weight = (position - low).view([-1 if d == axis else 1 for d in range(x.dim())])
    low_index = low.long()
    high_index = (low_index + 1).clamp(max=size - 1)
    return x.index_select(axis, low_index) * (1 - weight) + x.index_select(axis, high_index) * weight


def _upsample_converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    if len(node.input_values) > 1:
        name = node.input_values[1]
        if name not in graph.initializers:
            raise NotImplementedError("Upsample scales must be a constant")
        scales = [float(s) for s in graph.initializers[name].to_numpy().reshape(-1)]
    else:
        scales = [float(s) for s in node.attributes.get("scales", [])]
    mode = node.attributes.get("mode", "nearest")
    if len(scales) < 3 or scales[0] != 1 or scales[1] != 1:
        raise NotImplementedError(f"Upsample with scales {scales} (batch and channel must stay)")
    if mode not in ("nearest", "linear", "bilinear"):
        raise NotImplementedError(f"Upsample mode {mode!r}")
    module = Upsample(scales, "nearest" if mode == "nearest" else "linear")
    return OperationConverterResult(
        torch_module=module, onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values))


class AttributeSlice(nn.Module):
    """Slice before opset 10: constant ``starts``, ``ends`` and ``axes`` attributes, step 1."""

    def __init__(self, starts: list[int], ends: list[int], axes: list[int] | None) -> None:
        super().__init__()
        self.starts, self.ends = starts, ends
        self.axes = axes if axes is not None else list(range(len(starts)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        index = [slice(None)] * x.dim()
        for start, end, axis in zip(self.starts, self.ends, self.axes):
            size = x.shape[axis]
            # ONNX clamps out-of-range bounds (INT_MAX means "to the end"); Python slices do too
            index[axis] = slice(max(-size, min(start, size)), max(-size, min(end, size)))
        return x[tuple(index)]


def _attribute_slice_converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    a = node.attributes
    axes = a.get("axes")
    module = AttributeSlice([int(v) for v in a["starts"]], [int(v) for v in a["ends"]],
                            None if axes is None else [int(v) for v in axes])
    return OperationConverterResult(
        torch_module=module, onnx_mapping=OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values))


def _old_dropout_converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """Dropout 1-7 (``ratio`` and ``is_test`` as attributes): the identity in an inference graph."""
    return OperationConverterResult(
        torch_module=nn.Identity(), onnx_mapping=OnnxMapping(inputs=(node.input_values[0],),
                                                             outputs=node.output_values[:1]))


def _old_batchnorm_converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    """BatchNormalization 6 and 7: ``spatial=1`` (the default) means what opset 9 means;
    ``is_test`` and ``consumed_inputs`` only described training."""
    if not node.attributes.get("spatial", 1):
        raise NotImplementedError("BatchNormalization with spatial=0 (per-element statistics)")
    proto = onnx.NodeProto()
    proto.CopyFrom(node.proto)
    kept = [a for a in proto.attribute if a.name in ("epsilon", "momentum")]
    del proto.attribute[:]
    proto.attribute.extend(kept)
    return get_converter(operation_type="BatchNormalization", version=9)(OnnxNode(proto, node.unique_name), graph)


def _alias_misnumbered(add: Callable[[str, int, Converter], None]) -> None:
    """onnx2torch files some converters under an opset number where the op did not change (the
    attribute form of Slice, which opsets 1-9 share, under 9), while a model's node is looked up by
    the version its schema starts at (1): register each under that version too."""
    for key, converter in list(_CONVERTER_REGISTRY.items()):
        if key.domain not in ("", "ai.onnx"):
            continue
        try:
            since = onnx.defs.get_schema(key.operation_type, key.version, "").since_version
        except Exception:  # an op onnx no longer knows
            continue
        if since != key.version:
            add(key.operation_type, since, converter)


def register_legacy_converters(add: Callable[[str, int, Converter], None]) -> None:
    """Add the old ops through ``add(op, version, converter)``, then wrap every registered
    converter of a windowed op for SAME padding (call once, after all other registrations)."""
    add("Slice", 1, _attribute_slice_converter)  # onnx2torch's attribute form fails on its own axes
    for version in (1, 6, 7):
        add("Dropout", version, _old_dropout_converter)
    _alias_misnumbered(add)
    for version in (7, 9):
        add("Upsample", version, _upsample_converter)
    for version in (6, 7):
        add("BatchNormalization", version, _old_batchnorm_converter)
    for key, converter in list(_CONVERTER_REGISTRY.items()):
        if key.domain == "" and key.operation_type in _PADDED_OPS:
            _CONVERTER_REGISTRY[key] = _with_same_padding(converter)
