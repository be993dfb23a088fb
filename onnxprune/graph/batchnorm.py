"""BatchNorm for fine-tuning models whose exporter folded it into the Conv weights.

Why: pruning a channel removes its mean contribution to the next layer. Where BatchNorm is kept
and trains during fine-tuning, its batch statistics re-centre and re-scale the next layer at
once; where the exporter folded it away (both torch exporters by default), nothing does, each
round's shift adds to the last, and fine-tuning for a few steps cannot catch up (measured on
the MobileNet sample: 97.8 → 50 % at 30 % of the FLOPs; a lower learning rate is worse).

So a model without BatchNorm on most of its convs gets one after each conv that lacks it,
initialized from the calibration data so that it computes the identity (running mean and
variance are the conv output's, scale and shift undo them). Channel groups, slicing and
fine-tuning treat it as any BatchNorm; ``fold_inserted`` folds it back into the conv before
the model is verified and written, so the output has the original's structure.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .load import LoadedModel
from .nodes import INSERTED_MARK, is_inserted

__all__ = ["needs_batchnorm", "insert_batchnorm", "with_batchnorm", "shapes_with_inserted", "fold_inserted"]

log = logging.getLogger(__name__)

EPSILON = 1e-5
_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}
# A network that normalizes with these was designed without BatchNorm (ConvNeXt): nothing folded.
_OTHER_NORMS = {"LayerNormalization", "GroupNormalization", "InstanceNormalization"}


def needs_batchnorm(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> list[onnx.NodeProto]:
    """The convs that get a BatchNorm: none unless most convs lack one (BN was folded) and the
    network uses no other normalization, then each conv without one whose output is spatial and
    feeds another weighted layer.

    Convs of a model that keeps BN elsewhere lack it on purpose (heads, squeeze-excite); a head
    conv (nothing weighted after it) and a 1×1 output (its batch statistics are a handful of
    numbers) get none either.
    """
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    with_bn = [n for n in convs if any(c.op_type == "BatchNormalization" for c in consumers.get(n.output[0], []))]
    if not convs or len(with_bn) >= len(convs) / 2 or any(n.op_type in _OTHER_NORMS for n in model.graph.node):
        return []
    outputs = {o.name for o in model.graph.output}
    feeds_weighted = _feeds_weighted(model, consumers)
    chosen = []
    for node in convs:
        out = node.output[0]
        shape = shapes.get(out, ())
        if (node in with_bn or out in outputs or len(shape) != 4 or shape[2] * shape[3] <= 1
                or not feeds_weighted.get(out, False)):
            continue
        chosen.append(node)
    return chosen


def _feeds_weighted(model: onnx.ModelProto, consumers: dict[str, list[onnx.NodeProto]]) -> dict[str, bool]:
    """For each tensor: does a Conv, Gemm or MatMul read something computed from it?"""
    result: dict[str, bool] = {}
    for node in reversed(model.graph.node):  # topological order reversed: consumers first
        for out in node.output:
            result[out] = any(c.op_type in _WEIGHTED or any(result.get(o, False) for o in c.output)
                              for c in consumers.get(out, []))
    return result


def insert_batchnorm(model: onnx.ModelProto, convs: list[onnx.NodeProto],
                     mean: dict[str, np.ndarray], var: dict[str, np.ndarray]) -> onnx.ModelProto:
    """A copy with an identity BatchNorm after each of ``convs``, given their output statistics
    (per channel, keyed by output name) on the calibration data."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    wanted = {n.name for n in convs}
    nodes = []
    for node in out.graph.node:
        nodes.append(node)
        if node.name not in wanted:
            continue
        name = node.output[0]
        raw = f"{name}/{INSERTED_MARK}_input"
        node.output[0] = raw
        m = mean[name].astype(np.float32)
        v = np.maximum(var[name], 0).astype(np.float32)
        prefix = f"{node.name}/{INSERTED_MARK}"
        tensors = {"scale": np.sqrt(v + EPSILON), "bias": m, "mean": m, "var": v}
        for key, value in tensors.items():
            out.graph.initializer.append(numpy_helper.from_array(value.astype(np.float32), f"{prefix}.{key}"))
        nodes.append(helper.make_node(
            "BatchNormalization", [raw] + [f"{prefix}.{k}" for k in tensors], [name], name=prefix,
            epsilon=EPSILON,
        ))
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    log.info("BatchNorm was folded into the convs: %d identity BatchNorm layers added for fine-tuning "
             "(folded back before writing)", len(convs))
    return out


def with_batchnorm(loaded: LoadedModel, shapes: dict[str, tuple[int, ...]],
                   statistics: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None) -> LoadedModel:
    """``loaded`` with an identity BatchNorm after each conv that lost it to folding
    (``needs_batchnorm``), or ``loaded`` itself when the model keeps its BatchNorm. ``statistics``
    is (mean, variance) per channel of those convs' outputs on the calibration data
    (``calibration.calibrate``); without them (timing only: values do not change latency) mean 0
    and variance 1 stand in."""
    convs = needs_batchnorm(loaded.model, shapes)
    if not convs:
        return loaded
    names = [c.output[0] for c in convs]
    if statistics is not None:
        mean, var = statistics
    else:
        mean = {n: np.zeros(shapes[n][1], np.float32) for n in names}
        var = {n: np.ones(shapes[n][1], np.float32) for n in names}
    return replace(loaded, model=insert_batchnorm(loaded.model, convs, mean, var))


def shapes_with_inserted(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """Every tensor's shape in ``model`` (with inserted BatchNorm), from the shapes of the model
    it was inserted into: a conv's raw output has its BatchNorm's output shape; no need to run it."""
    out = dict(shapes)
    for node in model.graph.node:
        if is_inserted(node):
            out[node.input[0]] = shapes[node.output[0]]
    for init in model.graph.initializer:
        out.setdefault(init.name, tuple(init.dims))
    return out


def fold_inserted(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy with every inserted BatchNorm folded into the conv before it: W·s, (b − μ)·s + β
    with s = γ / √(σ² + ε)."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {init.name: init for init in out.graph.initializer}
    producer = {o: n for n in out.graph.node for o in n.output}
    drop_nodes, drop_inits = set(), set()
    for bn in out.graph.node:
        if not is_inserted(bn):
            continue
        conv = producer[bn.input[0]]
        gamma, beta, mu, var = (numpy_helper.to_array(inits[i]).astype(np.float64) for i in bn.input[1:5])
        eps = next((a.f for a in bn.attribute if a.name == "epsilon"), EPSILON)
        s = gamma / np.sqrt(var + eps)
        weight = inits[conv.input[1]]
        w = numpy_helper.to_array(weight).astype(np.float64)
        weight.CopyFrom(numpy_helper.from_array((w * s.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32),
                                                weight.name))
        if len(conv.input) > 2 and conv.input[2]:
            bias_init = inits[conv.input[2]]
            b = numpy_helper.to_array(bias_init).astype(np.float64)
        else:
            bias_init = out.graph.initializer.add()  # a reference: append() would store a copy
            bias_init.name = f"{conv.name}.bias_folded"
            b = np.zeros_like(s)
            while len(conv.input) < 3:
                conv.input.append("")
            conv.input[2] = bias_init.name
        bias_init.CopyFrom(numpy_helper.from_array(((b - mu) * s + beta).astype(np.float32), bias_init.name))
        conv.output[0] = bn.output[0]
        drop_nodes.add(bn.name)
        drop_inits.update(bn.input[1:5])
    kept = [n for n in out.graph.node if n.name not in drop_nodes]
    del out.graph.node[:]
    out.graph.node.extend(kept)
    kept_inits = [i for i in out.graph.initializer if i.name not in drop_inits]
    del out.graph.initializer[:]
    out.graph.initializer.extend(kept_inits)
    return out
