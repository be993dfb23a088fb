"""ONNX → torch through onnx2torch, checked against onnxruntime, with a parameter↔initializer map.

The torch module is a differentiable view of the ONNX graph, not a second source of truth:
fine-tuned weights go back into the ONNX initializers through ``Link``s (``write_back``).
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper

from ..errors import OnnxpruneError, first_line
from ..graph.load import LoadedModel
from ..graph.runtime import run_model
from ..graph.shapes import random_feed
from ..graph.tolerance import max_difference, within_tolerance
from .converters import register_converters

__all__ = [
    "Link", "Imported", "import_model", "module_names", "write_back", "torch_outputs", "compare_with_onnxruntime",
]

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Link:
    """One torch tensor that holds one ONNX initializer, possibly transposed or reshaped."""

    torch_name: str  # key in module.state_dict()
    initializer: str
    transform: str  # "same", "transpose" (Gemm with transB=0) or "reshape"
    trainable: bool  # an nn.Parameter (fine-tuned) rather than a buffer


@dataclass
class Imported:
    """The torch view of a model: an fx.GraphModule in eval mode and its links to initializers."""

    module: torch.fx.GraphModule
    links: tuple[Link, ...]
    output_names: tuple[str, ...]
    max_abs_diff: float  # against onnxruntime on random inputs at import time
    module_of: dict[str, str]  # ONNX node name -> its submodule's name in ``module``


def _convert(model: onnx.ModelProto) -> torch.fx.GraphModule:
    import onnx2torch

    register_converters()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = onnx2torch.convert(model, attach_onnx_mapping=True)
    except Exception as err:
        reason = first_line(err)
        raise OnnxpruneError(
            f"cannot import the model into torch: {reason}; onnxprune fine-tunes through torch, "
            "so every operator must be convertible"
        ) from err
    return module.eval()


def _match(tensor: torch.Tensor, array: np.ndarray) -> str | None:
    """How a torch tensor holds an initializer's values, or None when it does not."""
    value = tensor.detach().cpu().numpy()
    if value.shape == array.shape and np.array_equal(value, array):
        return "same"
    if value.ndim == 2 and value.T.shape == array.shape and np.array_equal(value.T, array):
        return "transpose"
    if value.size == array.size and np.array_equal(value.reshape(-1), array.reshape(-1)):
        return "reshape"
    return None


def _links(module: torch.fx.GraphModule, model: onnx.ModelProto) -> tuple[Link, ...]:
    """Map every tensor of the module to the initializer it came from.

    onnx2torch keeps initializers that a converter consumed as that module's parameters or
    buffers, and the others as ``initializers.onnx_initializer_<k>`` buffers, numbered per use
    in node order; both are matched by value within their own node, so identical initializers
    elsewhere cannot be confused.
    """
    from onnx2torch.onnx_graph import OnnxGraph

    inits = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    params = dict(module.named_parameters())
    links: list[Link] = []
    use_index = 0
    for unique_name, node in OnnxGraph(model.graph).nodes.items():
        sub = module.get_submodule(unique_name)
        mapping = getattr(sub, "onnx_mapping", None)
        runtime_inputs: tuple[str, ...] = tuple(mapping.inputs) if mapping is not None else ()
        for value in runtime_inputs:
            if value in inits:
                key = f"initializers.onnx_initializer_{use_index}"
                use_index += 1
                links.append(Link(key, value, "same", False))
        consumed = [v for v in node.input_values if v in inits and v not in runtime_inputs]
        tensors = list(sub.named_parameters()) + list(sub.named_buffers())
        for local_name, tensor in tensors:
            full = f"{unique_name}.{local_name}"
            for value in consumed:
                how = _match(tensor, inits[value])
                if how is not None:
                    links.append(Link(full, value, how, full in params))
                    consumed.remove(value)
                    break
            else:
                if full in params:
                    params[full].requires_grad_(False)
                    log.warning("parameter %s has no initializer behind it; it stays frozen", full)
    return tuple(links)


def _output_layout(model: onnx.ModelProto) -> list[tuple[int, int | None]]:
    """Where each graph output sits in what the onnx2torch module returns."""
    producer = {}
    for node in model.graph.node:
        for index, out in enumerate(node.output):
            producer[out] = (node, index)
    nodes = []
    for out in model.graph.output:
        if out.name not in producer:
            raise OnnxpruneError(f"graph output {out.name!r} is not produced by any node")
        nodes.append(producer[out.name][0].name + "|" + producer[out.name][0].output[0])
    order = list(OrderedDict.fromkeys(nodes))
    layout = []
    for out, key in zip(model.graph.output, nodes):
        node, index = producer[out.name]
        multi = len(node.output) > 1
        layout.append((order.index(key), index if multi else None))
    return layout


def torch_outputs(
    module: torch.nn.Module, model: onnx.ModelProto, x: torch.Tensor
) -> list[torch.Tensor]:
    """Run the module and return its outputs in the order of the ONNX graph's outputs."""
    result = module(x)
    layout = _output_layout(model)
    returned = result if len(OrderedDict.fromkeys(i for i, _ in layout)) > 1 else [result]
    outputs = []
    for node_index, out_index in layout:
        value = returned[node_index]
        outputs.append(value[out_index] if out_index is not None else value)
    return outputs


def compare_with_onnxruntime(
    module: torch.nn.Module, model: onnx.ModelProto, feed: dict[str, np.ndarray]
) -> tuple[float, float]:
    """Max abs difference between torch and onnxruntime over all outputs, and the output scale."""
    reference = run_model(model, feed)
    (x,) = feed.values()
    with torch.no_grad():
        ours = torch_outputs(module, model, torch.from_numpy(x))
    outputs = [a.detach().cpu().numpy() for a in ours]
    for a_np, b in zip(outputs, reference):
        if a_np.shape != b.shape:
            raise OnnxpruneError(
                f"torch import gives an output of shape {a_np.shape} where onnxruntime gives {b.shape}"
            )
    diff, scale, _ = max_difference(outputs, reference)
    return diff, scale


def import_model(loaded: LoadedModel, check: bool = True, seed: int = 0) -> Imported:
    """Convert to torch in eval mode; with ``check``, stop unless it matches onnxruntime."""
    module = _convert(loaded.model)
    links = _links(module, loaded.model)
    diff = float("nan")
    if check:
        feed = random_feed(loaded.image, batch=loaded.image.batch_or(2), seed=seed)
        diff, scale = compare_with_onnxruntime(module, loaded.model, feed)
        if not within_tolerance(diff, scale):
            raise OnnxpruneError(
                f"the torch import differs from onnxruntime by {diff:.3g} (outputs up to {scale:.3g}); "
                "an operator converts inexactly — please report the model's operator list"
            )
    names = tuple(o.name for o in loaded.model.graph.output)
    return Imported(module, links, names, diff, module_names(loaded.model))


def module_names(model: onnx.ModelProto) -> dict[str, str]:
    """ONNX node name -> the name onnx2torch gives its submodule."""
    from onnx2torch.onnx_graph import OnnxGraph

    return {node.proto.name: unique for unique, node in OnnxGraph(model.graph).nodes.items()}


def write_back(
    model: onnx.ModelProto, module: torch.nn.Module, links: tuple[Link, ...], trainable_only: bool = True
) -> onnx.ModelProto:
    """A copy of ``model`` whose initializers hold the module's current values."""
    state = module.state_dict()
    updated = onnx.ModelProto()
    updated.CopyFrom(model)
    by_name = {init.name: init for init in updated.graph.initializer}
    for link in links:
        if trainable_only and not link.trainable:
            continue
        target = by_name[link.initializer]
        value = state[link.torch_name].detach().cpu().numpy()
        if link.transform == "transpose":
            value = value.T
        # np.array, not np.ascontiguousarray: that turns a scalar (a Gather index) into shape (1,)
        value = np.array(value.reshape(tuple(target.dims)), order="C",
                         dtype=onnx.helper.tensor_dtype_to_np_dtype(target.data_type))
        target.CopyFrom(numpy_helper.from_array(value, target.name))
    return updated
