"""Least-squares reconstruction: where the removed channels are linear in the kept ones, the refit
layer computes exactly what the unpruned one did; elsewhere it is never worse than the plain cut."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import SAMPLES
from graphs import GraphBuilder
from onnx import numpy_helper

from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.graph.reconstruct import cut_consumers, reconstruct
from onnxprune.graph.runtime import run_batched
from onnxprune.graph.slice import slice_groups


def _dependent_model(consumer: str) -> onnx.ModelProto:
    """x → Conv A (4 channels, the last = the second + the third, + 1 where the consumer has no
    padding to break the shift) → ``consumer`` → output: removing A's last channel loses nothing a
    refit of the consumer cannot give back."""
    b = GraphBuilder(input_shape=("N", 3, 8, 8))
    w = b.rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = b.rng.standard_normal(4).astype(np.float32)
    w[3], bias[3] = w[1] + w[2], bias[1] + bias[2] + (consumer != "conv")
    a = b.node("Conv", ["x", b.init(w), b.init(bias)], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    if consumer == "conv":
        out = b.conv(a, 4, 5, k=3)
    elif consumer == "conv+bn":  # no bias: the shift goes into the BatchNormalization's mean
        out = b.bn(b.conv(a, 4, 5, k=1, bias=False), 5)
    else:  # a Gemm (transB) after pooling
        flat = b.node("Flatten", [b.node("GlobalAveragePool", [a])])
        out = b.node("Gemm", [flat, b.rand(5, 4), b.rand(5)], transB=1)
    return b.build([out])


def _cut(model: onnx.ModelProto, keep_of):
    loaded = load(model)
    analysis = analyze_groups(loaded)
    keep = {g.id: keep_of(g) for g in analysis.prunable}
    sliced, _ = slice_groups(loaded.model, loaded.image, analysis, keep)
    return loaded, sliced, cut_consumers(loaded.model, analysis, keep)


def _refit_on_noise(loaded, sliced, consumers, shape: tuple[int, ...]):
    """The cut refitted on 64 random inputs of ``shape`` and each model's first output on 16 more:
    (refitted model, refits, the original's, the plain cut's, the refit's)."""
    rng = np.random.default_rng(1)
    calib, fresh = (rng.standard_normal((n, *shape)).astype(np.float32) for n in (64, 16))
    refitted, refits = reconstruct(loaded.model, sliced, consumers, loaded.image.name, calib)
    outputs = [run_batched(m, loaded.image.name, fresh)[0] for m in (loaded.model, sliced, refitted)]
    return refitted, refits, *outputs


@pytest.mark.parametrize("consumer", ["conv", "conv+bn", "gemm"])
def test_a_removed_channel_linear_in_the_kept_ones_is_reconstructed_exactly(consumer: str) -> None:
    model = _dependent_model(consumer)
    loaded, sliced, consumers = _cut(model, lambda g: np.arange(3) if g.channels == 4 else np.arange(g.channels))
    assert [c.op for c in consumers] == ["Gemm" if consumer == "gemm" else "Conv"]
    refitted, refits, expected, plain, got = _refit_on_noise(loaded, sliced, consumers, (3, 8, 8))
    assert refits[0].kept and refits[0].error_share < 1e-4
    scale = np.abs(expected).max()
    assert np.abs(plain - expected).max() > 0.1 * scale  # the cut alone loses it
    np.testing.assert_allclose(got, expected, atol=1e-3 * scale)
    onnx.checker.check_model(refitted, full_check=True)
    # only weight values changed: same nodes, same initializer names and shapes
    assert [n.name for n in refitted.graph.node] == [n.name for n in sliced.graph.node]
    assert {i.name: tuple(i.dims) for i in refitted.graph.initializer} == {
        i.name: tuple(i.dims) for i in sliced.graph.initializer}


def test_a_random_cut_of_a_trained_sample_keeps_far_more_of_its_outputs() -> None:
    """Half of every group at random: sliced, the digits ResNet's predictions are lost; refitted
    layer by layer, most come back before any fine-tuning (the refit is kept only where it helps)."""
    from onnxprune.data.sources import load_data

    loaded, sliced, consumers = _cut(SAMPLES / "digits_resnet.onnx",
                                     lambda g: np.sort(np.random.default_rng(g.id).permutation(g.channels)[
                                         : max(1, g.channels // 2)]))
    data = load_data(SAMPLES / "digits", loaded.image)
    images = np.concatenate(list(data.batches(64)))
    calib, fresh = images[:64], images[64:160]
    refitted, refits = reconstruct(loaded.model, sliced, consumers, loaded.image.name, calib)
    assert refits and all(r.error_share < 1 for r in refits if r.kept)
    reference = run_batched(loaded.model, loaded.image.name, fresh)[0].argmax(1)
    plain = (run_batched(sliced, loaded.image.name, fresh)[0].argmax(1) == reference).mean()
    refit = (run_batched(refitted, loaded.image.name, fresh)[0].argmax(1) == reference).mean()
    assert refit > 0.6 and refit > plain + 0.4


def test_layers_too_wide_to_solve_are_left_as_sliced(monkeypatch) -> None:
    import onnxprune.graph.reconstruct as module

    model = _dependent_model("conv")
    monkeypatch.setattr(module, "MAX_FEATURES", 4 * 9 - 1)
    assert _cut(model, lambda g: np.arange(3) if g.channels == 4 else np.arange(g.channels))[2] == []


def test_weights_keep_their_dtype_and_layout() -> None:
    model = _dependent_model("gemm")
    loaded, sliced, consumers = _cut(model, lambda g: np.arange(3) if g.channels == 4 else np.arange(g.channels))
    calib = np.random.default_rng(2).standard_normal((32, 3, 8, 8)).astype(np.float32)
    refitted, _ = reconstruct(loaded.model, sliced, consumers, loaded.image.name, calib)
    weight = next(numpy_helper.to_array(i) for i in refitted.graph.initializer if i.name == consumers[0].weight)
    assert weight.dtype == np.float32 and weight.shape == (5, 3)


def test_a_costly_model_is_reconstructed_on_fewer_images() -> None:
    from onnxprune.graph.reconstruct import FEWEST_IMAGES, MOST_IMAGES, images_within

    assert images_within(10**7, 5, 128) == MOST_IMAGES  # a small model: all it may use
    assert images_within(10**7, 5, 20) == 20  # never more than there are
    assert FEWEST_IMAGES < images_within(4 * 10**9, 30, 128) < MOST_IMAGES  # a detector at 800×608
    assert images_within(10**12, 30, 128) == FEWEST_IMAGES


@pytest.mark.parametrize("rnn", ["LSTM", "GRU"])
def test_a_recurrent_layer_fed_by_a_cut_conv_is_refitted(tmp_path, rnn: str) -> None:
    """A CRNN's convolutions feed its recurrent layer: a removed conv channel that is a sum of two
    kept ones (plus a constant, which the layer's bias takes) comes back exactly by a refit of the
    recurrence's input map W, every sequence step a row."""
    import warnings

    import torch

    class Reader(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 4, 3, padding=1)
            self.rnn = getattr(torch.nn, rnn)(4 * 4, 6, bidirectional=True)
            with torch.no_grad():
                self.conv.weight[3] = self.conv.weight[1] + self.conv.weight[2]
                self.conv.bias[3] = self.conv.bias[1] + self.conv.bias[2] + 1

        def forward(self, x):
            f = self.conv(x)
            n, c, h, w = f.shape
            return self.rnn(f.reshape(n, c * h, w).permute(2, 0, 1))[0]

    torch.manual_seed(0)
    path = tmp_path / "reader.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Reader().eval(), (torch.randn(1, 1, 4, 10),), str(path), dynamo=False,
                          input_names=["x"], dynamic_axes={"x": {0: "n"}})
    loaded, sliced, consumers = _cut(onnx.load(str(path)), lambda g: np.arange(3) if g.channels == 4 else
                                     np.arange(g.channels))
    assert [c.op for c in consumers] == [rnn] and len(consumers[0].kept_in) == 12
    refitted, refits, expected, plain, got = _refit_on_noise(loaded, sliced, consumers, (1, 4, 10))
    assert refits[0].kept and refits[0].error_share < 1e-4
    assert np.abs(plain - expected).max() > 0.05  # the cut alone loses it
    np.testing.assert_allclose(got, expected, atol=1e-3)
    assert {i.name: tuple(i.dims) for i in refitted.graph.initializer} == {
        i.name: tuple(i.dims) for i in sliced.graph.initializer}
