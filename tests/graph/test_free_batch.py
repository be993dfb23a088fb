"""A fixed batch is freed inside and put back on the written model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from graphs import GraphBuilder

from onnxprune import prune
from onnxprune.errors import OnnxpruneError
from onnxprune.graph.free_batch import BATCH_NAME
from onnxprune.graph.load import load
from onnxprune.graph.output_axes import BatchAxis, restore_signature
from onnxprune.graph.runtime import run_model


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
    restored = restore_signature(loaded.model, loaded.signature)
    for vi in list(restored.graph.input) + list(restored.graph.output):
        assert vi.type.tensor_type.shape.dim[0].dim_value == 1


def _summed_over_channels(batch: int):
    """Channels moved to the front, [B, 4, 8, 8] → [4·B, 64], then summed over them: a bigger batch
    would sum over its samples, so the batch cannot be freed."""
    g = GraphBuilder(input_shape=(batch, 3, 8, 8))
    c = g.conv("x", 3, 4)
    rows = g.node("Reshape", [c, g.init(np.array([4 * batch, 64], np.int64))])
    return g.build([g.node("ReduceSum", [rows, g.init(np.array([0], np.int64))], keepdims=1)])


def test_a_batch_of_one_that_cannot_be_freed_runs_one_input_at_a_time() -> None:
    from onnxprune.graph.runtime import make_session

    original = _summed_over_channels(1)
    loaded = load(original)
    assert loaded.fixed_batch == 1 and loaded.image.batch_dim != BATCH_NAME  # kept as the file has it
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32)
    together = make_session(loaded.model).run(None, {"x": x})[0]
    assert together.shape == (3, 64)
    for i in range(3):
        np.testing.assert_allclose(together[i : i + 1], run_model(original, {"x": x[i : i + 1]})[0], rtol=1e-5)


def test_a_batch_above_one_that_cannot_be_freed_is_refused_with_what_to_do() -> None:
    with pytest.raises(OnnxpruneError, match="fixes its batch at 2 .* dynamic batch"):
        load(_summed_over_channels(2))


def test_a_model_that_takes_one_input_at_a_time_prunes_into_a_verified_file() -> None:
    """A graph that picks sample 0 out of its batch (Gather) and goes on with it: fine at batch 1,
    wrong at any other; fine-tuned in micro-batches of 1."""
    g = GraphBuilder(input_shape=(1, 3, 16, 16))
    c = g.node("Relu", [g.conv("x", 3, 8)])
    first = g.node("Unsqueeze", [g.node("Gather", [c, g.init(np.array(0, np.int64))], axis=0),
                                 g.init(np.array([0], np.int64))])
    model = g.build([g.conv(g.node("Relu", [g.conv(first, 8, 8)]), 8, 4)])
    x = np.random.default_rng(0).standard_normal((30, 3, 16, 16)).astype(np.float32)
    result = prune(model, x, 0.6, rounds=1, round_steps=2, epochs=0.2, round_to=1, bench=False, max_drop=100)
    assert result.report.flops.fraction <= 0.6
    dims = result.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1  # the file's own signature


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


class _SequenceFirst(torch.nn.Module):
    """A CTC-style reader's shape: conv features → columns as time steps → (T, N, classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, 11)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        columns = self.features(x).mean(2).permute(2, 0, 1)  # (T, N, C)
        return self.head(columns).log_softmax(2)


@pytest.mark.parametrize("dynamic", [False, True])
def test_a_sequence_first_output_prunes_and_keeps_its_layout(tmp_path, dynamic: bool) -> None:
    torch.manual_seed(0)
    path = tmp_path / "reader.onnx"
    torch.onnx.export(_SequenceFirst().eval(), (torch.randn(1, 1, 16, 40),), str(path), dynamo=False,
                      input_names=["x"], output_names=["logits"],
                      dynamic_axes={"x": {0: "n"}, "logits": {1: "n"}} if dynamic else None)
    loaded = load(path)
    assert loaded.output_axes == (BatchAxis(1, 1, (20, 11)),)
    assert run_model(loaded.model, {"x": np.zeros((3, 1, 16, 40), np.float32)})[0].shape == (3, 20, 11)
    x = np.random.default_rng(0).standard_normal((21, 1, 16, 40)).astype(np.float32)  # a short last batch
    result = prune(path, x, 0.5, rounds=1, round_steps=2, epochs=0.5, round_to=1, bench=False, max_drop=100,
                   batch_size=8)
    assert result.report.flops.fraction <= 0.5
    original = onnx.load(str(path))
    assert result.model.graph.output[0].type == original.graph.output[0].type
    assert not any("onnxprune" in n.name for n in result.model.graph.node)
    batch = 1 if not dynamic else 3
    assert run_model(result.model, {"x": x[:batch]})[0].shape == (20, batch, 11)


def test_an_output_that_folds_the_batch_into_its_rows_is_unfolded_inside() -> None:
    g = GraphBuilder(input_shape=("n", 3, 8, 8))
    c = g.conv("x", 3, 4)
    rows = g.node("Reshape", [g.node("Transpose", [c], perm=[0, 2, 3, 1]), g.init(np.array([-1, 4], np.int64))])
    original = g.build([rows])
    loaded = load(original, (8, 8))
    assert loaded.output_axes == (BatchAxis(0, 64, (64, 4)),)
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 8)).astype(np.float32)
    inside = run_model(loaded.model, {"x": x})[0]
    assert inside.shape == (2, 64, 4)
    np.testing.assert_allclose(inside.reshape(128, 4), run_model(original, {"x": x})[0], rtol=1e-6)
    restored = restore_signature(loaded.model, loaded.signature)
    assert run_model(restored, {"x": x})[0].shape == (128, 4)


def test_a_one_at_a_time_output_with_the_batch_inside_is_found_sequence_first() -> None:
    """(T, 1, C), a reader's layout, from a file whose batch cannot be freed: the axis of 1 is the batch."""
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    c = g.node("Relu", [g.conv("x", 3, 4)])
    first = g.node("Unsqueeze", [g.node("Gather", [c, g.init(np.array(0, np.int64))], axis=0),
                                 g.init(np.array([0], np.int64))])
    steps = g.node("Transpose", [g.node("Reshape", [first, g.init(np.array([1, 4, 64], np.int64))])], perm=[2, 0, 1])
    loaded = load(g.build([steps]))
    assert loaded.output_axes == (BatchAxis(1, 1, (64, 4)),)
