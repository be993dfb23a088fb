"""A fixed batch is freed inside and put back on the written model."""

from __future__ import annotations

import numpy as np
import pytest
from graphs import GraphBuilder

from onnxprune.batch import BATCH_NAME, restore_batch
from onnxprune.errors import OnnxpruneError
from onnxprune.load import load
from onnxprune.runtime import run_model


def _batch_one_with_baked_reshape():
    """Conv → Reshape to [1, 4, 64] (the batch baked in, as constant folding leaves it) → Relu."""
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    c = g.conv("x", 3, 4)
    r = g.node("Reshape", [c, g.init(np.array([1, 4, 64], np.int64))])
    flat = g.node("Reshape", [g.node("Relu", [r]), g.init(np.array([1, -1], np.int64))])
    return g.build([flat])


def test_a_batch_fixed_at_one_is_freed_and_each_sample_matches_the_original() -> None:
    original = _batch_one_with_baked_reshape()
    loaded = load(original)
    assert loaded.fixed_batch == 1 and loaded.image.batch_dim == BATCH_NAME
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    together = run_model(loaded.model, {"x": x})[0]
    assert together.shape == (3, 256)
    for i in range(3):
        np.testing.assert_allclose(together[i : i + 1], run_model(original, {"x": x[i : i + 1]})[0], rtol=1e-5,
                                   atol=1e-5)


def test_the_written_model_gets_the_users_fixed_batch_back() -> None:
    loaded = load(_batch_one_with_baked_reshape())
    restored = restore_batch(loaded.model, loaded.fixed_batch)
    for vi in list(restored.graph.input) + list(restored.graph.output):
        assert vi.type.tensor_type.shape.dim[0].dim_value == 1
    assert restore_batch(loaded.model, None) is loaded.model  # a free batch stays free


def test_a_batch_that_cannot_be_freed_is_refused_with_what_to_do() -> None:
    # channels moved to the front: [1, 4, 8, 8] → [4, 64]; a bigger batch would mix samples
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    c = g.conv("x", 3, 4)
    mixed = g.node("Reshape", [c, g.init(np.array([4, 64], np.int64))])
    with pytest.raises(OnnxpruneError, match="fixes its batch at 1 .* dynamic batch"):
        load(g.build([mixed]))


def test_a_batch_fixed_above_one_is_freed_in_expand_targets_too() -> None:
    g = GraphBuilder(input_shape=(2, 3, 8, 8))
    c = g.conv("x", 3, 4)
    e = g.node("Expand", [g.node("ReduceMean", [c], axes=[2, 3], keepdims=1),
                          g.init(np.array([2, 4, 8, 8], np.int64))])
    original = g.build([g.node("Add", [c, e])])
    loaded = load(original)
    x = np.random.default_rng(1).standard_normal((4, 3, 8, 8)).astype(np.float32)
    out = run_model(loaded.model, {"x": x})[0]
    np.testing.assert_allclose(out[2:], run_model(original, {"x": x[2:]})[0], rtol=1e-5, atol=1e-5)


def _matches_sample_by_sample(original) -> None:
    loaded = load(original)
    x = np.random.default_rng(2).standard_normal((3, 3, 8, 8)).astype(np.float32)
    together = run_model(loaded.model, {"x": x})[0]
    for i in range(3):
        alone = run_model(original, {"x": x[i : i + 1]})[0]
        np.testing.assert_allclose(together[i : i + 1], alone, rtol=1e-5, atol=1e-5)


def test_a_resize_to_constant_sizes_follows_the_batch() -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    c = g.conv("x", 3, 4)
    sizes = g.init(np.array([1, 4, 16, 16], np.int64))
    _matches_sample_by_sample(g.build([g.node("Resize", [c, "", "", sizes], mode="linear")]))


def test_a_strided_view_on_a_batch_of_one_is_taken_per_sample() -> None:
    # torch's dynamo exporter writes as_strided this way: flatten everything, gather fixed indices
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    pooled = g.node("ReduceMean", [g.conv("x", 3, 4)], axes=[2, 3], keepdims=1)
    flat = g.node("Reshape", [pooled, g.init(np.array([-1], np.int64))])
    idx = g.init(np.array([3, 1, 2, 0], np.int64).reshape(1, 4, 1, 1))
    _matches_sample_by_sample(g.build([g.node("Gather", [flat, idx], axis=0)]))


def test_a_reshape_with_allowzero_and_no_zero_copies_the_batch() -> None:
    # torch's dynamo exporter writes allowzero=1 on every Reshape, [1, 4, -1] included
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    c = g.conv("x", 3, 4)
    _matches_sample_by_sample(g.build([g.node("Reshape", [c, g.init(np.array([1, 4, -1], np.int64))],
                                              allowzero=1)]))
