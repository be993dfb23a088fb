from __future__ import annotations

import numpy as np
import pytest
from graphs import GraphBuilder
from onnx import numpy_helper

from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.graph.runtime import run_model
from onnxprune.graph.shapes import expose_all
from onnxprune.stages.calibration import calibrate
from onnxprune.stages.lossless import watched_tensors


def _model():
    g = GraphBuilder(input_shape=("N", 3, 8, 8), seed=2)
    a = g.node("Relu", [g.conv("x", 3, 6)])
    b = g.node("Relu", [g.conv(a, 6, 8)])
    return g.build([g.conv(g.node("GlobalAveragePool", [b]), 8, 4, k=1)])


@pytest.mark.parametrize("batch_values, opset", [(1 << 27, 13), (1, 13), (1 << 27, 18)])  # axes became an input
def test_one_pass_gives_what_separate_passes_gave(monkeypatch, batch_values: int, opset: int) -> None:
    import onnxprune.stages.calibration as calibration

    monkeypatch.setattr(calibration, "ACTIVATION_VALUES", batch_values)  # many inputs per run, or one
    model = _model()
    model.opset_import[0].version = opset
    loaded = load(model)
    analysis = analyze_groups(loaded)
    x = np.random.default_rng(0).standard_normal((10, 3, 8, 8)).astype(np.float32)
    convs = [n.output[0] for n in loaded.model.graph.node if n.op_type == "Conv"][:2]
    watched = watched_tensors(loaded.model, analysis)
    found = calibrate(loaded.model, "x", x, convs, watched, shapes=analysis.shapes)
    names = [o.name for o in loaded.model.graph.output]
    everything = dict(zip([*names, *convs, *watched], run_model(expose_all(loaded.model, [*convs, *watched]), {"x": x},
                                                                 [*names, *convs, *watched])))
    np.testing.assert_allclose(found.outputs[0], everything[names[0]], rtol=1e-5, atol=1e-6)
    for name in convs:
        v = everything[name].astype(np.float64)
        np.testing.assert_allclose(found.mean[name], v.mean(axis=(0, 2, 3)), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(found.var[name], v.var(axis=(0, 2, 3)), rtol=1e-5)
    assert set(found.extremes) == set(watched) and watched
    for tensor in watched:
        v = everything[tensor]
        c = v.shape[1]
        np.testing.assert_array_equal(found.extremes[tensor][:c], v.max(axis=(0, 2, 3)))
        np.testing.assert_array_equal(found.extremes[tensor][c:], -v.min(axis=(0, 2, 3)))


def test_a_large_mean_does_not_swamp_a_small_variance() -> None:
    model = _model()
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    bias = next(i for i in model.graph.initializer if i.name == conv.input[2])
    bias.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(bias) + 3000.0, bias.name))
    loaded = load(model)
    analysis = analyze_groups(loaded)
    x = 1e-3 * np.random.default_rng(0).standard_normal((12, 3, 8, 8)).astype(np.float32)
    found = calibrate(loaded.model, "x", x, [conv.output[0]], shapes=analysis.shapes)
    v = run_model(expose_all(loaded.model, [conv.output[0]]), {"x": x}, [conv.output[0]])[0].astype(np.float64)
    np.testing.assert_allclose(found.var[conv.output[0]], v.var(axis=(0, 2, 3)), rtol=1e-2)
