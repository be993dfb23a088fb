"""Where the batch is in each output, and the batch put first inside onnxprune (what the shape
alone says — the features' axis, class scores — is ``output_shapes``).

Not every output has the batch first: a sequence recognizer returns (T, N, C), other graphs fold
the batch into an axis (N·A, C). Each output's batch axis is found by running two batch sizes,
checked sample by sample, and inside onnxprune a marked Transpose (and Reshape, for a folded
batch) puts it first, so every stage can split, join, cache and compare outputs along axis 0.
``restore_signature`` removes those nodes again and puts the file's own input and output types
back on the written model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from ..errors import OnnxpruneError
from .image_input import ImageInput
from .runtime import run_model, run_model_each
from .shapes import random_input
from .tolerance import max_difference

__all__ = ["BATCH_FIRST_MARK", "BatchAxis", "batch_axis", "batch_first", "find_output_axes", "put_batch_first",
           "restore_signature"]

BATCH_FIRST_MARK = "onnxprune_batch_first"  # names the nodes put_batch_first adds, and only those


@dataclass(frozen=True)
class BatchAxis:
    """Where the batch is in one output: ``axis``, and how many items of that axis one sample
    has (``fold``: 1 unless the graph folded the batch into that axis, as in N·A rows)."""

    axis: int = 0
    fold: int = 1
    rest: tuple[int, ...] = ()  # one sample's shape without the batch axis (for the fold's Reshape)

    @property
    def first(self) -> bool:
        return self.axis == 0 and self.fold == 1


def batch_axis(small: tuple[int, ...], large: tuple[int, ...], n_small: int, n_large: int) -> BatchAxis | None:
    """The one axis that grows with the batch between two runs, or None."""
    if len(small) != len(large):
        return None
    grown = [k for k, (a, b) in enumerate(zip(small, large)) if a != b]
    if len(grown) != 1:
        return None
    k = grown[0]
    if small[k] % n_small or large[k] * n_small != small[k] * n_large:
        return None
    fold = small[k] // n_small
    return BatchAxis(k, fold, (fold, *small[:k], *small[k + 1:]) if fold > 1 else (*small[:k], *small[k + 1:]))


def batch_first(x: np.ndarray, where: BatchAxis) -> np.ndarray:
    """``x`` with its batch on axis 0, one row per sample (what ``put_batch_first`` computes)."""
    if where.first:
        return x
    moved = np.moveaxis(x, where.axis, 0)
    return moved.reshape((-1, *where.rest)) if where.fold > 1 else moved


def find_output_axes(model: onnx.ModelProto, image: ImageInput, name: str, n: int = 1,
                     reference: onnx.ModelProto | None = None, refusal=None) -> tuple[BatchAxis, ...]:
    """Each output's batch axis, from a run of 2n samples against two runs of n (of
    ``reference``, the file as it was, where given); refused unless each sample's outputs are
    the ones it has alone."""
    def refuse(why: str) -> OnnxpruneError:
        return refusal(why) if refusal else OnnxpruneError(f"{name}: {why}; onnxprune needs outputs that "
                                                           "hold one result per sample")

    x = random_input(image.shape(2 * n), seed=1)
    try:
        together = run_model(model, {image.name: x})
    except OnnxpruneError as err:
        raise refuse(str(err)) from err
    halves = run_model_each(reference or model, [{image.name: x[i * n:(i + 1) * n]} for i in range(2)])
    axes = []
    for k, out in enumerate(model.graph.output):
        small, large = np.shape(halves[0][k]), np.shape(together[k])
        where = batch_axis(small, large, n, 2 * n)
        if where is None:
            raise refuse(f"output {out.name!r} does not follow the batch (shape {small} for {n} sample(s), "
                         f"{large} for {2 * n})")
        expected = np.concatenate([batch_first(h[k], where) for h in halves])
        if not max_difference([batch_first(together[k], where)], [expected])[2]:
            raise refuse(f"output {out.name!r} mixes the samples of a batch")
        axes.append(where)
    return tuple(axes)


def put_batch_first(model: onnx.ModelProto, axes: tuple[BatchAxis, ...]) -> onnx.ModelProto:
    """A copy whose outputs have the batch first: a marked Transpose (and a Reshape where the
    batch is folded) after each output that has it elsewhere; the output names stay."""
    if all(a.first for a in axes):
        return model
    moved = onnx.ModelProto()
    moved.CopyFrom(model)
    graph = moved.graph
    for out, where in zip(graph.output, axes):
        if where.first:
            continue
        raw, base = f"{out.name}/{BATCH_FIRST_MARK}/raw", f"{out.name}/{BATCH_FIRST_MARK}"
        for node in graph.node:
            node.output[:] = [raw if o == out.name else o for o in node.output]
            node.input[:] = [raw if i == out.name else i for i in node.input]
        rank = len(where.rest) + (1 if where.fold == 1 else 0)  # the raw output's (``rest`` holds the fold)
        perm = [where.axis, *(d for d in range(rank) if d != where.axis)]
        if where.fold == 1:
            graph.node.append(onnx.helper.make_node("Transpose", [raw], [out.name], name=f"{base}/Transpose",
                                                    perm=perm))
        else:
            target = numpy_helper.from_array(np.array([-1, *where.rest], np.int64), f"{base}/shape")
            graph.initializer.append(target)
            graph.node.extend([
                onnx.helper.make_node("Transpose", [raw], [f"{base}/moved"], name=f"{base}/Transpose", perm=perm),
                onnx.helper.make_node("Reshape", [f"{base}/moved", target.name], [out.name], name=f"{base}/Reshape"),
            ])
        out.type.tensor_type.ClearField("shape")
    del graph.value_info[:]
    try:
        return onnx.shape_inference.infer_shapes(moved, data_prop=True)
    except Exception:  # inference gives up on some graphs; the stages probe shapes by running instead
        return moved


def restore_signature(model: onnx.ModelProto, signature: tuple[onnx.ValueInfoProto, ...]) -> onnx.ModelProto:
    """``model`` as the user's file has it on the outside: the nodes ``put_batch_first`` added
    removed, and the file's own input and output types (a fixed batch, named dims) put back."""
    restored = onnx.ModelProto()
    restored.CopyFrom(model)
    graph = restored.graph
    added = [n for n in graph.node if f"/{BATCH_FIRST_MARK}/" in n.name]
    if added:
        kept = [n for n in graph.node if n not in added]
        del graph.node[:]
        graph.node.extend(kept)
        shapes = {i.name for i in graph.initializer if f"/{BATCH_FIRST_MARK}/" in i.name}
        kept_inits = [i for i in graph.initializer if i.name not in shapes]
        del graph.initializer[:]
        graph.initializer.extend(kept_inits)
        for out in graph.output:
            raw = f"{out.name}/{BATCH_FIRST_MARK}/raw"
            for node in graph.node:
                node.output[:] = [out.name if o == raw else o for o in node.output]
                node.input[:] = [out.name if i == raw else i for i in node.input]
    del graph.value_info[:]
    types = {vi.name: vi.type for vi in signature}

    def put_back(m: onnx.ModelProto) -> onnx.ModelProto:
        for vi in list(m.graph.input) + list(m.graph.output):
            if vi.name in types:
                vi.type.CopyFrom(types[vi.name])
        return m

    # before inference (a fixed batch flows through), and after: it would replace the file's
    # named dims with the sizes it found
    return put_back(onnx.shape_inference.infer_shapes(put_back(restored)))
