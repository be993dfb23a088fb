from __future__ import annotations

import numpy as np
import pytest
from graphs import GraphBuilder

from onnxprune.calibration import calibrate
from onnxprune.groups import analyze_groups
from onnxprune.load import load
from onnxprune.lossless import watched_tensors
from onnxprune.runtime import run_model
from onnxprune.shapes import expose_all


def _model():
    g = GraphBuilder(input_shape=("N", 3, 8, 8), seed=2)
    a = g.node("Relu", [g.conv("x", 3, 6)])
    b = g.node("Relu", [g.conv(a, 6, 8)])
    return g.build([g.conv(g.node("GlobalAveragePool", [b]), 8, 4, k=1)])


@pytest.mark.parametrize("batch_values", [1 << 27, 1])  # many inputs per run, and one
def test_one_pass_gives_what_separate_passes_gave(monkeypatch, batch_values: int) -> None:
    import onnxprune.calibration as calibration

    monkeypatch.setattr(calibration, "EXPOSED_VALUES", batch_values)
    loaded = load(_model())
    analysis = analyze_groups(loaded)
    x = np.random.default_rng(0).standard_normal((10, 3, 8, 8)).astype(np.float32)
    convs = [n.output[0] for n in loaded.model.graph.node if n.op_type == "Conv"][:2]
    watched = watched_tensors(loaded.model, analysis)
    found = calibrate(loaded.model, "x", x, convs, watched, analysis.shapes)
    names = [o.name for o in loaded.model.graph.output]
    everything = dict(zip([*names, *convs, *watched], run_model(expose_all(loaded.model, [*convs, *watched]), {"x": x},
                                                                 [*names, *convs, *watched])))
    np.testing.assert_allclose(found.outputs[0], everything[names[0]], rtol=1e-5, atol=1e-6)
    for name in convs:
        v = everything[name].astype(np.float64)
        np.testing.assert_allclose(found.mean[name], v.mean(axis=(0, 2, 3)), rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(found.var[name], v.var(axis=(0, 2, 3)), rtol=1e-7, atol=1e-9)
    assert set(found.extremes) == set(watched) and watched
    for tensor in watched:
        v = everything[tensor]
        c = v.shape[1]
        np.testing.assert_array_equal(found.extremes[tensor][:c], v.max(axis=(0, 2, 3)))
        np.testing.assert_array_equal(found.extremes[tensor][c:], -v.min(axis=(0, 2, 3)))
