"""Property checks shared by the slicer tests: a random keep-set must give a valid, exact model."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import onnx
from onnx import numpy_helper

from onnxprune.graph.flops import count
from onnxprune.graph.groups import GroupAnalysis, analyze_groups, axis_indices, predict_cost
from onnxprune.graph.load import LoadedModel
from onnxprune.graph.runtime import run_model
from onnxprune.graph.shapes import probe_shapes, random_feed
from onnxprune.graph.slice import slice_groups, slice_model

__all__ = ["random_keep", "zero_dropped_at_consumers", "assert_close", "check_random_slice"]


def random_keep(analysis: GroupAnalysis, drop: float, seed: int, exact_only: bool) -> dict[int, np.ndarray]:
    rng = np.random.default_rng(seed)
    keep = {}
    for g in analysis.prunable:
        if (exact_only and not g.exact) or g.channels < 2:
            continue
        n_keep = max(1, round(g.channels * (1 - drop)))
        keep[g.id] = np.sort(rng.choice(g.channels, n_keep, replace=False))
    return keep


def zero_dropped_at_consumers(model: onnx.ModelProto, analysis: GroupAnalysis, keep) -> onnx.ModelProto:
    """The original model with the dropped channels' consumer weights set to zero.

    Dropped channels then contribute nothing to anything downstream, which is exactly what
    removing them does — for groups with no normalization across channels.
    """
    zeroed = onnx.ModelProto()
    zeroed.CopyFrom(model)
    inits = {i.name: i for i in zeroed.graph.initializer}
    for slot in analysis.slots:
        if slot.role != "consumer" or not set(slot.segments) & keep.keys():
            continue
        array = numpy_helper.to_array(inits[slot.initializer]).copy()
        kept = axis_indices(slot.segments, slot.sizes, slot.outer, slot.inner, keep)
        dropped = np.setdiff1d(np.arange(array.shape[slot.axis]), kept)
        moved = np.moveaxis(array, slot.axis, 0)
        moved[dropped] = 0
        inits[slot.initializer].CopyFrom(numpy_helper.from_array(array, slot.initializer))
    return zeroed


def assert_close(a: list[np.ndarray], b: list[np.ndarray], rtol: float = 1e-4) -> None:
    for x, y in zip(a, b):
        scale = max(float(np.abs(y).max()), 1e-3)
        assert x.shape == y.shape
        assert float(np.abs(x - y).max()) <= rtol * scale + 1e-6, float(np.abs(x - y).max())


def assert_same_groups(derived: GroupAnalysis, traced: GroupAnalysis) -> None:
    """The groups the slicer hands over are the groups tracing the sliced model finds, field by field."""
    for f in fields(GroupAnalysis):
        assert getattr(derived, f.name) == getattr(traced, f.name), f"derived groups differ in {f.name}"


def check_random_slice(loaded: LoadedModel, drop: float = 0.3, seed: int = 0) -> None:
    """Keep-all is identity; a random keep-set is valid, costs what was predicted, and is exact."""
    model, image = loaded.model, loaded.image
    analysis = analyze_groups(loaded)
    feed = random_feed(image, image.batch_or(2), seed=1)
    reference = run_model(model, feed)
    # keep-all slicing changes nothing
    everything = {g.id: np.arange(g.channels) for g in analysis.prunable}
    assert_close(run_model(slice_model(model, analysis, everything), feed), reference)
    for exact_only in (True, False):
        keep = random_keep(analysis, drop, seed, exact_only)
        sliced, groups = slice_groups(model, image, analysis, keep)
        onnx.checker.check_model(sliced, full_check=True)
        onnx.shape_inference.infer_shapes(sliced, check_type=True, strict_mode=True)
        outputs = run_model(sliced, feed)
        widths = {gid: len(idx) for gid, idx in keep.items()}
        assert_same_groups(groups, analyze_groups(LoadedModel(sliced, image, None)))
        predicted = predict_cost(model, analysis, widths)
        actual = count(sliced, probe_shapes(sliced, image))
        assert (actual.flops, actual.macs, actual.params) == (predicted.flops, predicted.macs, predicted.params)
        if exact_only:
            assert_close(outputs, run_model(zero_dropped_at_consumers(model, analysis, keep), feed))
        else:
            assert all(o.shape == r.shape for o, r in zip(outputs, reference))


