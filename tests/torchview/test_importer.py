from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SAMPLE_MODELS, SAMPLES
from graphs import GraphBuilder
from zoo import TESTED

from onnxprune.graph.load import load
from onnxprune.graph.shapes import random_feed
from onnxprune.torchview.importer import compare_with_onnxruntime, import_model, write_back


def _check_import_and_write_back(loaded) -> None:
    imported = import_model(loaded)
    assert not imported.module.training, "onnx2torch returns training mode; we must hand back eval"
    # Every trainable parameter is backed by exactly one initializer.
    params = {n for n, p in imported.module.named_parameters() if p.requires_grad}
    linked = {link.torch_name for link in imported.links if link.trainable}
    assert params == linked
    assert len({link.initializer for link in imported.links if link.trainable}) == len(linked)
    # Perturb every parameter in torch, write back, and the ONNX model must follow.
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in imported.module.parameters():
            p.mul_(1 + 0.05 * torch.randn(p.shape, generator=generator))
    updated = write_back(loaded.model, imported.module, imported.links)
    feed = random_feed(loaded.image, loaded.image.batch_or(2), seed=3)
    diff, scale = compare_with_onnxruntime(imported.module, updated, feed)
    assert diff <= 1e-4 * max(scale, 1e-3), (diff, scale)
    before, _ = compare_with_onnxruntime(imported.module, loaded.model, feed)
    assert before > diff, "write-back changed nothing"


def test_gemm_without_transb_writes_back_transposed() -> None:
    g = GraphBuilder(input_shape=(1, 3, 4, 4))
    flat = g.node("Flatten", [g.conv("x", 3, 2, k=1)])
    model = g.build([g.node("Gemm", [flat, g.rand(32, 5), g.rand(5)], transB=0)])
    loaded = load(model)
    imported = import_model(loaded)
    assert {link.transform for link in imported.links if link.trainable} >= {"transpose"}
    _check_import_and_write_back(loaded)


def test_batchnorm_statistics_are_linked_as_buffers() -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    model = g.build([g.node("Relu", [g.bn(g.conv("x", 3, 4, bias=False), 4)])])
    imported = import_model(load(model))
    buffers = {link.torch_name.rsplit(".", 1)[-1] for link in imported.links if not link.trainable}
    assert {"running_mean", "running_var"} <= buffers


@pytest.mark.parametrize("name", SAMPLE_MODELS)
def test_sample_model_imports_exactly(name: str) -> None:
    _check_import_and_write_back(load(SAMPLES / name))


@pytest.mark.slow
@pytest.mark.parametrize("name, exporter, dynamic", TESTED)
def test_zoo_model_imports_exactly(zoo_model, name: str, exporter: str, dynamic: bool) -> None:
    _check_import_and_write_back(load(zoo_model(name, exporter, dynamic)))


def test_import_refuses_what_onnx2torch_cannot_convert() -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    c = g.conv("x", 3, 4)
    model = g.build([g.node("Hardmax", [c], axis=1)])
    from onnxprune.errors import OnnxpruneError

    with pytest.raises(OnnxpruneError, match="cannot import the model into torch"):
        import_model(load(model))


def test_outputs_follow_graph_output_order() -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    c = g.conv("x", 3, 4)
    a, b = g.node("Split", [c, g.init(np.array([1, 3], np.int64))], n_out=2, axis=1)
    r = g.node("Relu", [a])
    model = g.build([b, r])
    imported = import_model(load(model))
    assert imported.max_abs_diff <= 1e-5


def test_tiny_outputs_are_compared_against_float32_noise_not_their_own_scale() -> None:
    from onnxprune.graph.tolerance import within_tolerance

    assert within_tolerance(1.2e-7, 6e-6)  # PaddleOCR det's sigmoid map on random inputs
    assert not within_tolerance(1e-4, 6e-6)  # a wrong converter is still caught
    assert within_tolerance(1e-4, 2.0) and not within_tolerance(1e-3, 2.0)
