"""FLOPs, multiply-accumulates and parameters per node, counted on the ONNX graph.

What is counted (docs/models.md repeats this):
- Conv: MACs = output elements × ((input channels / group) × kernel area + 1 if it has a bias).
- ConvTranspose: MACs = input elements × (output channels / group) × kernel area, plus one per
  output element for the bias.
- Gemm: MACs = output elements × (K + 1 if it has a bias C); MatMul: output elements × K.
  (A bias add counts as one MAC per output element, as onnx-tool and most counters do.)
- FLOPs = 2 × MACs for those four, plus one FLOP per output element of every other arithmetic op
  (activations, elementwise math, normalization, pooling, reductions, Softmax, Resize): the
  ``cost`` column of ``ops.OPS``.
- BatchNormalization that onnxprune inserted for fine-tuning (batchnorm.py) costs what folding
  it into its conv before writing adds: nothing, or the bias of a conv that had none.
- Data movement (Reshape, Transpose, Concat, Slice, Pad, Gather, …) costs nothing.
- Params: elements of the float initializers a node reads (shape constants, Clip bounds and
  Resize scales are settings, not parameters).
All at batch size 1 and the model's input H×W.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import onnx

from onnx import TensorProto

from .nodes import INSERTED_MARK, attribute, is_inserted
from .ops import Cost, rule

__all__ = ["NodeCost", "ModelCost", "count"]

# Inputs that are settings, not weights: Clip bounds, Resize scales, Pad's fill value.
_SETTING_INPUTS = {"Clip": (1, 2), "Resize": (1, 2, 3), "Upsample": (1,), "Pad": (1, 2, 3)}

_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}


@dataclass(frozen=True)
class NodeCost:
    """What one node costs at batch 1."""

    name: str
    op_type: str
    macs: int
    flops: int
    params: int


@dataclass(frozen=True)
class ModelCost:
    nodes: tuple[NodeCost, ...]
    params: int  # unique float initializer elements

    @property
    def macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    def by_op_type(self) -> dict[str, dict[str, int]]:
        table: dict[str, dict[str, int]] = {}
        for n in self.nodes:
            row = table.setdefault(n.op_type, {"count": 0, "macs": 0, "flops": 0, "params": 0})
            row["count"] += 1
            row["macs"] += n.macs
            row["flops"] += n.flops
            row["params"] += n.params
        return table


def node_macs(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Multiply-accumulates of a Conv, ConvTranspose, Gemm, MatMul, LSTM or GRU; 0 for other ops."""
    op = node.op_type
    bias = 1 if len(node.input) > 2 and node.input[2] else 0
    if op == "Conv":
        weight = shapes[node.input[1]]
        return prod(shapes[node.output[0]]) * (prod(weight[1:]) + bias)
    if op == "ConvTranspose":
        weight = shapes[node.input[1]]  # (C_in, C_out / group, k...)
        return prod(shapes[node.input[0]]) * prod(weight[1:]) + bias * prod(shapes[node.output[0]])
    if op == "Gemm":
        a = shapes[node.input[0]]
        k = a[0] if attribute(node, "transA", 0) else a[1]
        return prod(shapes[node.output[0]]) * (k + bias)
    if op == "MatMul":
        a = shapes[node.input[0]]
        return prod(shapes[node.output[0]]) * a[-1]
    if op in ("LSTM", "GRU"):  # every step of every sequence: its input and its state through all gates
        return prod(shapes[node.input[0]][:-1]) * (prod(shapes[node.input[1]]) + prod(shapes[node.input[2]]))
    return 0


def count(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> ModelCost:
    """Per-node and total cost from concrete shapes (see ``shapes.probe_shapes``)."""
    settings = {
        node.input[i]
        for node in model.graph.node
        for i in _SETTING_INPUTS.get(node.op_type, ())
        if i < len(node.input)
    }
    float_inits = {
        init.name: prod(shapes.get(init.name, tuple(init.dims)))
        for init in model.graph.initializer
        if init.data_type in _FLOAT_TYPES and init.name not in settings and INSERTED_MARK not in init.name
    }
    costs = []
    producer = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if is_inserted(node):  # folded into its conv before writing: at most a bias it adds
            conv = producer[node.input[0]]
            has_bias = len(conv.input) > 2 and bool(conv.input[2])
            macs = 0 if has_bias else prod(shapes[node.output[0]])
            costs.append(NodeCost(node.name, node.op_type, macs, 2 * macs, 0))
            continue
        macs = node_macs(node, shapes)
        kind = rule(node.op_type).cost
        if kind is Cost.MACS:
            flops = 2 * macs
        elif kind is Cost.PER_OUTPUT:
            flops = sum(prod(shapes[o]) for o in node.output[:1] if o in shapes)
        else:
            flops = 0
        params = sum(float_inits[i] for i in set(node.input) if i in float_inits)
        costs.append(NodeCost(node.name, node.op_type, int(macs), int(flops), int(params)))
    return ModelCost(tuple(costs), int(sum(float_inits.values())))
