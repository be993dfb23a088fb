"""Concrete tensor shapes for one input size, measured by running the graph once.

Static shape inference gives up on graphs other frameworks export (computed Reshape targets,
symbolic spatial dims); running onnxruntime with every intermediate exposed never does.
"""

from __future__ import annotations

import numpy as np
import onnx

from .image_input import ImageInput
from .runtime import run_model

__all__ = ["probe_shapes", "random_feed", "random_input", "expose_all", "up_to"]


def random_input(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Seeded standard-normal float32 values: the one way onnxprune makes up an input."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def random_feed(image: ImageInput, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """A seeded normal-distributed image batch for the model's image input."""
    return {image.name: random_input(image.shape(batch), seed)}


def expose_all(model: onnx.ModelProto, names: list[str] | None = None) -> onnx.ModelProto:
    """A copy whose graph outputs include every node output (or the given names)."""
    exposed = onnx.ModelProto()
    exposed.CopyFrom(model)
    present = {o.name for o in exposed.graph.output}
    wanted = names if names is not None else [o for n in model.graph.node for o in n.output if o]
    for name in wanted:
        if name not in present:
            exposed.graph.output.append(onnx.ValueInfoProto(name=name))
            present.add(name)
    return exposed


def up_to(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy that computes only ``names`` (its outputs): the nodes they need and nothing after
    them, which onnxruntime would otherwise run whatever outputs are asked for."""
    needed, kept = set(names), []
    for node in reversed(model.graph.node):
        if any(o in needed for o in node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    del cut.graph.node[:], cut.graph.output[:]
    cut.graph.node.extend(reversed(kept))
    cut.graph.output.extend(onnx.ValueInfoProto(name=name) for name in names)
    inits = [i for i in cut.graph.initializer if i.name in needed]
    del cut.graph.initializer[:]
    cut.graph.initializer.extend(inits)
    return cut


def probe_shapes(
    model: onnx.ModelProto, image: ImageInput, batch: int = 1
) -> dict[str, tuple[int, ...]]:
    """Shape of every graph input, initializer and node output at the given batch size."""
    exposed = expose_all(model)
    feed = random_feed(image, batch)
    names = [o.name for o in exposed.graph.output]
    values = run_model(exposed, feed, names)
    shapes = {name: tuple(np.shape(v)) for name, v in zip(names, values)}
    shapes.update({k: v.shape for k, v in feed.items()})
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    return shapes
