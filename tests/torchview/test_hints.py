"""Feature hints: the pruned model's stage-end maps matched to the original's through projections
that are fitted, trained and never written."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import SAMPLES

from onnxprune import prune
from onnxprune.graph.load import load
from onnxprune.graph.shapes import probe_shapes
from onnxprune.torchview.hints import FeatureHints, hint_nodes
from onnxprune.torchview.view import TorchView


def test_stage_ends_are_matched_by_name_deepest_first() -> None:
    loaded = load(SAMPLES / "digits_resnet.onnx")
    shapes = probe_shapes(loaded.model, loaded.image)
    nodes = hint_nodes(loaded.model, loaded.model, shapes)
    sizes = [shapes[next(n for n in loaded.model.graph.node if n.name == name).output[0]][2:] for name in nodes]
    assert 1 <= len(nodes) <= 4 and sizes == sorted(sizes)


def test_the_fitted_projection_reproduces_a_map_the_cut_did_not_touch() -> None:
    loaded = load(SAMPLES / "digits_resnet.onnx")
    student, teacher = TorchView.of(loaded.model, loaded.image), TorchView.of(loaded.model, loaded.image)
    nodes = hint_nodes(loaded.model, loaded.model, probe_shapes(loaded.model, loaded.image))
    hints = FeatureHints(student.imported.module, student.imported.module_of, teacher.imported.module,
                         teacher.imported.module_of, nodes)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        teacher.run(teacher.imported.module, x)
        student.run(student.imported.module, x)
    hints.prepare(torch.device("cpu"))
    assert float(hints.loss()) < 1e-3  # the least-squares start: the identity here
    hints.close()
    assert not hints.student_maps


@pytest.mark.slow  # an end-to-end run of a path off by default: CI runs it (--all)
def test_a_run_with_feature_hints_writes_a_model_without_the_projections(tmp_path) -> None:
    result = prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", 0.5, labels="imagefolder", rounds=1,
                   round_steps=2, epochs=0.1, calibration_images=32, round_to=1, bench=False, max_drop=100,
                   feature_hints=True)
    normalized = load(SAMPLES / "digits_resnet.onnx").model
    # nothing of the projections written: every node is one of the original's (a removed block's are gone)
    assert {n.name for n in result.model.graph.node} <= {n.name for n in normalized.graph.node}
    assert result.report.settings["feature_hints"] is True and result.report.flops.fraction <= 0.5
