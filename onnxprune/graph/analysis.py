"""What a model is and what it costs: the data behind ``onnxprune analyze``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnx

from ..errors import OnnxpruneError
from .blocks import find_blocks
from .flops import ModelCost
from .groups import GroupAnalysis, analyze_groups
from .load import FreeInputSize, LoadedModel, graph_inputs, load
from .output_axes import restore_signature

__all__ = ["analyze", "describe", "describe_groups", "FREE_SIZE"]

FREE_SIZE = 224  # where analyze counts a free height or width (ImageNet's, the commonest)


def _dims(vi: onnx.ValueInfoProto) -> list[int | str]:
    out: list[int | str] = []
    for d in vi.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or "?"))
    return out


def _tensor(vi: onnx.ValueInfoProto) -> dict[str, Any]:
    elem = vi.type.tensor_type.elem_type
    return {"name": vi.name, "dtype": onnx.TensorProto.DataType.Name(elem).lower(), "shape": _dims(vi)}


def describe_groups(analysis: GroupAnalysis) -> dict[str, Any]:
    """Channel groups for people and pipelines: largest first, blocked ones with reasons."""
    groups = sorted(analysis.groups, key=lambda g: (bool(g.blocked), -g.flops_per_channel * g.channels))
    return {
        "count": len(analysis.groups),
        "prunable": len(analysis.prunable),
        "blocked": len(analysis.groups) - len(analysis.prunable),
        "prunable_channels": sum(g.channels for g in analysis.prunable),
        "groups": [
            {
                "id": g.id,
                "channels": g.channels,
                "blocked": "; ".join(g.blocked) if g.blocked else None,
                "exact": g.exact,
                "flops_per_channel": g.flops_per_channel,
                "params_per_channel": g.params_per_channel,
                "producers": list(g.producers),
                "members": [
                    {"initializer": s.initializer, "axis": s.axis, "role": s.role, "node": s.node}
                    for s in analysis.slots
                    if g.id in s.segments
                ],
            }
            for g in groups
        ],
    }


def describe(loaded: LoadedModel, cost: ModelCost) -> dict[str, Any]:
    """The analysis as one JSON-ready dict (the ``--json`` output), without groups."""
    model = restore_signature(loaded.model, loaded.signature)  # the file's own signature
    opsets = {op.domain or "ai.onnx": op.version for op in model.opset_import}
    top = sorted(cost.nodes, key=lambda n: n.flops, reverse=True)[:10]
    return {
        "model": str(loaded.source) if loaded.source else None,
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "ir_version": model.ir_version,
        "opset": opsets,
        "inputs": [_tensor(vi) for vi in graph_inputs(model)],
        "outputs": [_tensor(vi) for vi in model.graph.output],
        "image_input": {
            "name": loaded.image.name,
            "layout": loaded.image.layout,
            "channels": loaded.image.channels,
            "height": loaded.image.height,
            "width": loaded.image.width,
        },
        "counted_at": {"batch": 1, "height": loaded.image.height, "width": loaded.image.width},
        "fixed_batch": loaded.fixed_batch,
        "nodes": len(model.graph.node),
        "params": cost.params,
        "macs": cost.macs,
        "flops": cost.flops,
        "by_op_type": dict(sorted(cost.by_op_type().items(), key=lambda kv: -kv[1]["flops"])),
        "top_nodes": [
            {"name": n.name, "op_type": n.op_type, "macs": n.macs, "flops": n.flops,
             "flops_share": n.flops / cost.flops if cost.flops else 0.0, "params": n.params}
            for n in top
        ],
    }


def analyze(model: str | Path | onnx.ModelProto, input_size: tuple[int, int] | None = None) -> dict[str, Any]:
    """Load, normalize and count a model; the result is what ``onnxprune analyze --json`` prints. A
    height or width the file leaves free is counted at ``FREE_SIZE`` (said in ``size_chosen``)."""
    chosen = None
    try:
        loaded = load(model, input_size)
    except FreeInputSize as free:
        chosen = tuple(s or FREE_SIZE for s in free.spatial)
        try:
            loaded = load(model, chosen)  # type: ignore[arg-type]
        except OnnxpruneError as err:  # a reader that needs its own height, say
            raise OnnxpruneError(f"the input's height or width is free in the file and the model does not run at "
                                 f"{chosen[0]}×{chosen[1]} ({err}); pass --input-size H W") from err
    analysis = analyze_groups(loaded)
    result = describe(loaded, analysis.cost)
    if chosen:
        result["size_chosen"] = (f"{chosen[0]}×{chosen[1]}: the file leaves the input's height or width free; "
                                 "--input-size H W counts at another")
    result["prunable_flops_share"] = analysis.prunable_flops_share()
    result["groups"] = describe_groups(analysis)
    result["blocks"] = [b.as_dict() for b in find_blocks(loaded.model, analysis.shapes)]
    return result
