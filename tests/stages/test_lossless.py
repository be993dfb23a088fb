"""The lossless pass on graphs whose dead and constant channels are known by construction."""

from __future__ import annotations

import numpy as np
import onnx
from graphs import GraphBuilder
from onnx import numpy_helper

from onnxprune import prune
from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.graph.runtime import run_batched
from onnxprune.report import LosslessCounts
from onnxprune.stages.lossless import lossless_pass


def _bn(g: GraphBuilder, x: str, gamma: np.ndarray, beta: np.ndarray) -> str:
    c = len(gamma)
    return g.node("BatchNormalization", [
        x, g.init(gamma.astype(np.float32)), g.init(beta.astype(np.float32)),
        g.rand(c), g.init(g.rng.uniform(0.5, 1.5, c).astype(np.float32))])


def _switched_off(g: GraphBuilder, c: int, constant: dict[int, float]) -> tuple[np.ndarray, np.ndarray]:
    """BN scale and shift where the listed channels output a constant (scale 0, shift = value)."""
    gamma, beta = g.rng.uniform(0.5, 1.5, c), g.rng.standard_normal(c) * 0.5
    for channel, value in constant.items():
        gamma[channel], beta[channel] = 0.0, value
    return gamma, beta


def _run(model: onnx.ModelProto, steps: dict[int, int] | None = None):
    loaded = load(model)
    analysis = analyze_groups(loaded)
    x = np.random.default_rng(1).standard_normal((24, 3, 8, 8)).astype(np.float32)
    result = lossless_pass(loaded.model, loaded.image, analysis, x, steps or {})
    before = run_batched(loaded.model, "x", x)[0]
    after = run_batched(result.model, "x", x)[0]
    return result, before, after


def _foldable_model() -> onnx.ModelProto:
    g = GraphBuilder(input_shape=("N", 3, 8, 8), seed=3)
    h = g.conv(g.input.name, 3, 8)  # 3×3, padded
    h = g.node("Relu", [_bn(g, h, *_switched_off(g, 8, {2: 0.7, 5: -1.0, 6: 0.4}))])  # 5 is dead after Relu
    h = g.conv(h, 8, 8, k=1, bias=False)  # no padding and no bias: one is created
    h = g.node("Relu", [_bn(g, h, *_switched_off(g, 8, {1: 0.3}))])
    h = g.node("Flatten", [g.node("GlobalAveragePool", [h])])
    y = g.node("Gemm", [h, g.rand(3, 8), g.rand(3)], transB=1)
    return g.build([y])


def test_dead_channels_go_and_constant_ones_fold_into_unpadded_consumers() -> None:
    result, before, after = _run(_foldable_model())

    assert (result.dead, result.folded, result.constant_kept) == (1, 3, 0)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
    widths = sorted(numpy_helper.to_array(i).shape[0] for i in result.model.graph.initializer
                    if numpy_helper.to_array(i).ndim == 4)
    assert widths == [5, 7]  # 8 − 3 and 8 − 1 filters
    onnx.checker.check_model(result.model, full_check=True)


def _one_constant_one_dead(seed: int) -> tuple[GraphBuilder, str]:
    """conv → BN → ReLU, 8 channels: channel 2 constant (0.7), channel 5 dead."""
    g = GraphBuilder(input_shape=("N", 3, 8, 8), seed=seed)
    h = g.conv(g.input.name, 3, 8)
    return g, g.node("Relu", [_bn(g, h, *_switched_off(g, 8, {2: 0.7, 5: -1.0}))])


def test_constant_channels_before_a_padded_conv_stay() -> None:
    g, h = _one_constant_one_dead(seed=4)
    h = g.conv(h, 8, 4)  # 3×3 with zero padding: a constant input is not constant at the border
    y = g.node("Flatten", [g.node("GlobalAveragePool", [h])])
    result, before, after = _run(g.build([y]))

    assert (result.dead, result.folded, result.constant_kept) == (1, 0, 1)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_constant_channels_before_a_matmul_head_stay_and_dead_ones_go() -> None:
    # other frameworks export a classifier head as MatMul + Add: no bias input to fold into
    g, h = _one_constant_one_dead(seed=6)
    h = g.node("Flatten", [g.node("GlobalAveragePool", [h])])
    y = g.node("Add", [g.node("MatMul", [h, g.rand(8, 3)]), g.rand(3)])
    result, before, after = _run(g.build([y]))

    assert (result.dead, result.folded, result.constant_kept) == (1, 0, 1)
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_removable_channels_stay_where_the_width_step_needs_them() -> None:
    g = GraphBuilder(input_shape=("N", 3, 8, 8), seed=5)
    h = g.conv(g.input.name, 3, 8)
    h = g.node("Relu", [_bn(g, h, *_switched_off(g, 8, {0: 0.2, 1: -1.0, 2: 0.5, 3: -2.0, 4: 0.1}))])
    h = g.conv(h, 8, 4, k=1)
    y = g.node("Flatten", [g.node("GlobalAveragePool", [h])])
    model = g.build([y])
    group = next(gr.id for gr in analyze_groups(load(model)).prunable if gr.channels == 8)
    result, before, after = _run(model, {group: 4})

    # five removable (1 and 3 dead), but widths move in fours: the three live channels and one
    # dead one remain
    assert (result.dead, result.folded) == (1, 3)
    assert [numpy_helper.to_array(i).shape[0] for i in result.model.graph.initializer
            if numpy_helper.to_array(i).ndim == 4][0] == 4
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)


def test_the_report_counts_what_the_lossless_pass_removed() -> None:
    data = np.random.default_rng(2).standard_normal((40, 3, 8, 8)).astype(np.float32)
    report = prune(_foldable_model(), data, 0.9, round_to=1, epochs=0, bench=False).report
    assert report.lossless == LosslessCounts(dead_channels_removed=1, constant_channels_folded=3,
                                             constant_channels_kept=0)


def test_a_removal_that_would_change_the_outputs_is_skipped_not_fatal(monkeypatch, caplog) -> None:
    """Should the pass ever find a channel dead where it is read but live where it did not look,
    the check catches it: the run goes on pruning by saliency alone, and says so."""
    import onnxprune.stages.lossless as lossless
    from onnxprune.stages.lossless import LosslessResult

    def wrong(model, *args, **kwargs):
        changed = onnx.ModelProto()
        changed.CopyFrom(model)
        weight = next(i for i in changed.graph.initializer if numpy_helper.to_array(i).ndim == 4)
        weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
        return LosslessResult(changed, 1, 0, 0, None)

    monkeypatch.setattr(lossless, "lossless_pass", wrong)
    data = np.random.default_rng(2).standard_normal((40, 3, 8, 8)).astype(np.float32)
    with caplog.at_level("WARNING", logger="onnxprune"):
        # random weights on random inputs: quality is not what this test is about
        report = prune(_foldable_model(), data, 0.9, round_to=1, epochs=0, bench=False, max_drop=100).report
    assert "lossless pass skipped" in caplog.text
    assert report.lossless == LosslessCounts(dead_channels_removed=0, constant_channels_folded=0,
                                             constant_channels_kept=0)
