"""onnx2torch converters for what it lacks: opset 18+ operators from torch's dynamo exporter
and from other frameworks' recent exports (``legacy_ops`` has the older exporters' forms).

Registered once, on import, through onnx2torch's own registry. Newer operator versions whose
semantics are unchanged for the attributes in use delegate to the older converter; the few with
new semantics (axes as an input, ``allowzero``, ``num_outputs``) get a small module here.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from onnx2torch.node_converters.registry import _CONVERTER_REGISTRY, add_converter, get_converter
from onnx2torch.onnx_graph import OnnxGraph
from onnx2torch.onnx_node import OnnxNode
from onnx2torch.utils.common import OnnxMapping, OperationConverterResult, onnx_mapping_from_node
from torch import nn

from .legacy_ops import register_legacy_converters
from .recurrent import recurrent_converter

__all__ = ["register_converters"]

_registered = False


def _static_input(node: OnnxNode, graph: OnnxGraph, index: int) -> np.ndarray | None:
    """The value of an optional input when it is an initializer, None when it is absent."""
    names = node.input_values
    if len(names) <= index or not names[index]:
        return None
    if names[index] not in graph.initializers:
        raise NotImplementedError(f"{node.operation_type} input {index} must be a constant")
    return graph.initializers[names[index]].to_numpy()


def _only_first_input(node: OnnxNode) -> OnnxMapping:
    return OnnxMapping(inputs=(node.input_values[0],), outputs=node.output_values)


class Reduce(nn.Module):
    """ONNX Reduce* with static axes (opset 18 moved axes from an attribute to an input)."""

    def __init__(self, op: str, axes: list[int] | None, keepdims: bool, noop_with_empty_axes: bool):
        super().__init__()
        self.op, self.axes, self.keepdims, self.noop = op, axes, keepdims, noop_with_empty_axes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.axes:
            if self.noop:
                return x
            axes = list(range(x.dim()))
        else:
            axes = [a % x.dim() for a in self.axes]
        op, keep = self.op, self.keepdims
        if op == "ReduceMean":
            return x.mean(dim=axes, keepdim=keep)
        if op == "ReduceSum":
            return x.sum(dim=axes, keepdim=keep)
        if op == "ReduceSumSquare":
            return (x * x).sum(dim=axes, keepdim=keep)
        if op == "ReduceL1":
            return x.abs().sum(dim=axes, keepdim=keep)
        if op == "ReduceL2":
            return (x * x).sum(dim=axes, keepdim=keep).sqrt()
        if op == "ReduceLogSum":
            return x.sum(dim=axes, keepdim=keep).log()
        if op == "ReduceLogSumExp":
            return torch.logsumexp(x, dim=axes, keepdim=keep)
        out = x
        for axis in sorted(axes, reverse=True):  # max/min/prod reduce one axis at a time
            if op == "ReduceMax":
                out = out.amax(dim=axis, keepdim=keep)
            elif op == "ReduceMin":
                out = out.amin(dim=axis, keepdim=keep)
            else:
                out = out.prod(dim=axis, keepdim=keep)
        return out


def _reduce_converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    axes = _static_input(node, graph, 1)
    if axes is None and "axes" in node.attributes:
        axes = np.asarray(node.attributes["axes"])
    module = Reduce(
        node.operation_type,
        None if axes is None else [int(a) for a in axes.reshape(-1)],
        bool(node.attributes.get("keepdims", 1)),
        bool(node.attributes.get("noop_with_empty_axes", 0)),
    )
    return OperationConverterResult(torch_module=module, onnx_mapping=_only_first_input(node))


class Reshape(nn.Module):
    """ONNX Reshape with ``allowzero``: 0 copies the input dim unless allowzero=1."""

    def __init__(self, allowzero: bool):
        super().__init__()
        self.allowzero = allowzero

    def forward(self, x: torch.Tensor, shape: torch.Tensor) -> torch.Tensor:
        dims = [int(d) for d in shape.tolist()]
        if not self.allowzero:
            dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
        return torch.reshape(x, dims)


def _reshape_converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    module = Reshape(bool(node.attributes.get("allowzero", 0)))
    return OperationConverterResult(torch_module=module, onnx_mapping=onnx_mapping_from_node(node))


class SplitEven(nn.Module):
    """ONNX Split-18 with ``num_outputs``: chunks of ceil(dim / n), the last one smaller."""

    def __init__(self, axis: int, num_outputs: int):
        super().__init__()
        self.axis, self.num_outputs = axis, num_outputs

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        size = math.ceil(x.shape[self.axis] / self.num_outputs)
        return tuple(torch.split(x, size, dim=self.axis))


class SplitSizes(nn.Module):
    """ONNX Split with explicit sizes (or equal parts when none are given)."""

    def __init__(self, axis: int, sizes: list[int] | None, parts: int):
        super().__init__()
        self.axis, self.sizes, self.parts = axis, sizes, parts

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sizes = self.sizes or x.shape[self.axis] // self.parts
        return tuple(torch.split(x, sizes, dim=self.axis))


def _split_converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    axis = int(node.attributes.get("axis", 0))
    sizes = _static_input(node, graph, 1)
    if sizes is None and "num_outputs" in node.attributes:
        module: nn.Module = SplitEven(axis, int(node.attributes["num_outputs"]))
    else:
        listed = None if sizes is None else [int(s) for s in sizes.reshape(-1)]
        module = SplitSizes(axis, listed, len(node.output_values))
    return OperationConverterResult(torch_module=module, onnx_mapping=_only_first_input(node))


def _gelu_converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    approximate = node.attributes.get("approximate", "none")
    return OperationConverterResult(
        torch_module=nn.GELU(approximate=approximate), onnx_mapping=onnx_mapping_from_node(node)
    )


class Mish(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.mish(x)


def _mish_converter(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
    return OperationConverterResult(torch_module=Mish(), onnx_mapping=onnx_mapping_from_node(node))


def _delegate(op: str, to_version: int, unsupported: Callable[[OnnxNode], str | None] = lambda n: None):
    """A converter for a newer version of ``op`` whose meaning did not change for this node."""

    def convert(node: OnnxNode, graph: OnnxGraph) -> OperationConverterResult:
        reason = unsupported(node)
        if reason:
            raise NotImplementedError(f"{op}: {reason}")
        return get_converter(operation_type=op, version=to_version)(node, graph)

    return convert


def _dilated(node: OnnxNode) -> str | None:
    if any(d != 1 for d in node.attributes.get("dilations", [])):
        return "dilations other than 1 are not supported"
    return None


def _pad_with_axes(node: OnnxNode) -> str | None:
    if len(node.input_values) > 3 and node.input_values[3]:
        return "the axes input is not supported"
    return None


def _resize_extras(node: OnnxNode) -> str | None:
    if node.attributes.get("antialias", 0):
        return "antialias is not supported"
    if node.attributes.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        return "keep_aspect_ratio_policy is not supported"
    if node.attributes.get("axes"):
        return "the axes attribute is not supported"
    return None


# op -> (versions to add, converter) for ops whose meaning changed or that onnx2torch lacks
_NEW: list[tuple[str, tuple[int, ...], Callable]] = [
    *[
        (op, (18,), _reduce_converter)
        for op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                   "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")
    ],
    ("ReduceMax", (20,), _reduce_converter),
    ("ReduceMin", (20,), _reduce_converter),
    ("Reshape", (19, 21, 23), _reshape_converter),
    ("Split", (18,), _split_converter),
    ("Gelu", (20,), _gelu_converter),
    ("Mish", (18, 22), _mish_converter),
    *[(op, (7, 14, 22), recurrent_converter) for op in ("LSTM", "GRU")],
]

# (op, newer versions, the version whose converter still applies, check)
_SAME_MEANING: list[tuple[str, tuple[int, ...], int, Callable[[OnnxNode], str | None]]] = [
    ("AveragePool", (19, 22), 11, _dilated),
    ("MaxPool", (22,), 12, lambda n: None),
    ("Conv", (22,), 11, lambda n: None),
    ("ConvTranspose", (22,), 11, lambda n: None),
    ("GlobalAveragePool", (22,), 1, lambda n: None),
    ("InstanceNormalization", (22,), 6, lambda n: None),
    ("Pad", (18, 19, 21, 23), 13, _pad_with_axes),
    ("Resize", (18, 19), 13, _resize_extras),
    ("HardSigmoid", (22,), 6, lambda n: None),
    ("HardSwish", (22,), 14, lambda n: None),
    ("Elu", (22,), 6, lambda n: None),
    ("Selu", (22,), 6, lambda n: None),
    ("Softplus", (22,), 1, lambda n: None),
    ("Softsign", (22,), 1, lambda n: None),
    ("LeakyRelu", (22,), 16, lambda n: None),
    ("Flatten", (21, 23), 13, lambda n: None),
    ("Transpose", (21, 23), 13, lambda n: None),
    ("Squeeze", (21, 23), 13, lambda n: None),
    ("Unsqueeze", (21, 23), 13, lambda n: None),
    ("Cast", (19, 21, 23), 13, lambda n: None),
    ("Constant", (19, 21, 23), 13, lambda n: None),
    ("Identity", (19, 21, 23), 16, lambda n: None),
    ("Shape", (19, 21, 23), 15, lambda n: None),
    ("ConstantOfShape", (20, 21, 23), 9, lambda n: None),
]


def register_converters() -> None:
    """Add our converters to onnx2torch's registry (idempotent)."""
    global _registered
    if _registered:
        return
    for op, versions, converter in _NEW:
        for version in versions:
            _add(op, version, converter)
    for op, versions, base, check in _SAME_MEANING:
        for version in versions:
            _add(op, version, _delegate(op, base, check))
    register_legacy_converters(_add)  # last: it wraps every windowed op's converter for SAME padding
    _registered = True


def _add(op: str, version: int, converter: Callable) -> None:
    if any(key.operation_type == op and key.version == version and key.domain == ""
           for key in _CONVERTER_REGISTRY):
        return  # a newer onnx2torch already has it
    add_converter(operation_type=op, version=version)(converter)
