"""What older exporters and other frameworks' converters write: each form imports exactly and prunes."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from graphs import GraphBuilder
from pruning_checks import check_random_slice

from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.torchview.importer import import_model
from onnxprune.torchview.legacy_ops import same_pads


def _imports_and_prunes(model: onnx.ModelProto, prunable: int = 1):
    loaded = load(model)
    import_model(loaded)  # raises unless torch and onnxruntime agree
    analysis = analyze_groups(loaded)
    assert len(analysis.prunable) >= prunable
    check_random_slice(loaded)  # the sliced model is valid and equals zeroing the dropped channels
    return loaded, analysis


@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER"])
@pytest.mark.parametrize("size", [8, 9])  # the odd pixel goes to one side or the other
def test_same_padding_on_convs_and_pools_imports_and_prunes(mode: str, size: int) -> None:
    g = GraphBuilder(input_shape=(1, 3, size, size))
    c = g.node("Conv", ["x", g.rand(6, 3, 3, 3), g.rand(6)], kernel_shape=[3, 3], strides=[2, 2], auto_pad=mode)
    p = g.node("MaxPool", [g.node("Relu", [c])], kernel_shape=[3, 3], strides=[2, 2], auto_pad=mode)
    c2 = g.node("Conv", [p, g.rand(4, 6, 3, 3), g.rand(4)], kernel_shape=[3, 3], auto_pad=mode)
    a = g.node("AveragePool", [c2], kernel_shape=[2, 2], strides=[1, 1], auto_pad=mode)  # pads not counted
    _imports_and_prunes(g.build([a]))


@pytest.mark.parametrize("mode", ["SAME_UPPER", "SAME_LOWER", "VALID"])
def test_conv_transpose_with_auto_pad_imports(mode: str) -> None:
    g = GraphBuilder(input_shape=(1, 3, 5, 5))
    c = g.conv("x", 3, 4)
    t = g.node("ConvTranspose", [c, g.rand(4, 2, 3, 3), g.rand(2)], kernel_shape=[3, 3], strides=[2, 2], auto_pad=mode)
    _imports_and_prunes(g.build([t]))


def test_same_pads_follow_onnx_rule() -> None:
    assert same_pads(9, 3, 2, 1, upper=True) == (1, 1)
    assert same_pads(8, 3, 2, 1, upper=True) == (0, 1) and same_pads(8, 3, 2, 1, upper=False) == (1, 0)
    assert same_pads(8, 3, 1, 2, upper=True) == (2, 2)  # dilation widens the window


def test_prelu_slopes_are_sliced_with_their_conv() -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    c = g.conv("x", 3, 6)
    slopes = g.rand(6, 1, 1)
    r = g.node("PRelu", [c, slopes])
    loaded, analysis = _imports_and_prunes(g.build([g.conv(r, 6, 4)]))
    assert any(s.initializer == slopes and s.role == "per_channel" for s in analysis.slots)


def test_upsample_of_opset_7_and_9_imports_nearest_and_linear() -> None:
    for opset, mode in ((7, "nearest"), (9, "nearest"), (9, "linear")):
        g = GraphBuilder(opset=opset)
        c = g.conv("x", 3, 4)
        if opset == 7:
            u = g.node("Upsample", [c], mode=mode, scales=[1.0, 1.0, 2.0, 2.0])
        else:
            u = g.node("Upsample", [c, g.init(np.array([1, 1, 2, 2], np.float32))], mode=mode)
        _imports_and_prunes(g.build([g.conv(g.node("Relu", [u]), 4, 5)], ir_version=4))


def test_opset_9_ops_with_their_settings_as_attributes_import_and_prune() -> None:
    """Slice (bounds), Pad (pads), Clip (min, max), Squeeze/Unsqueeze (axes) and Dropout (ratio)
    took attributes before inputs; an old exporter's file has them so."""
    from onnxprune import prune

    g = GraphBuilder(input_shape=("n", 3, 16, 16), opset=9)
    c = g.node("Relu", [g.conv("x", 3, 8)])
    s = g.node("Slice", [c], starts=[0, 1], ends=[16, 2147483647], axes=[2, 3])  # one column off the left
    p = g.node("Pad", [s], pads=[0, 0, 0, 1, 0, 0, 0, 0], mode="constant", value=0.0)
    k = g.node("Clip", [g.conv(p, 8, 8)], min=0.0, max=6.0)
    d = g.node("Dropout", [k], ratio=0.5)
    q = g.node("Squeeze", [g.node("Unsqueeze", [d], axes=[0])], axes=[0])
    model = g.build([g.conv(q, 8, 4)], ir_version=4)
    _imports_and_prunes(model)
    x = np.random.default_rng(0).standard_normal((24, 3, 16, 16)).astype(np.float32)
    result = prune(model, x, 0.6, rounds=1, round_steps=1, epochs=0, round_to=1, bench=False, max_drop=100)
    assert result.model.opset_import[0].version == 9
    assert [n.op_type for n in result.model.graph.node].count("Slice") == 1


def test_batchnorm_of_opset_7_with_spatial_imports_and_prunes() -> None:
    g = GraphBuilder(opset=7)
    c = g.conv("x", 3, 4)
    bn = g.node("BatchNormalization", [c, g.init(np.ones(4, np.float32)), g.rand(4), g.rand(4),
                                       g.init(np.full(4, 1.5, np.float32))], spatial=1)
    _imports_and_prunes(g.build([g.conv(g.node("Relu", [bn]), 4, 5)], ir_version=4))


def test_weights_held_in_constant_nodes_import_and_prune() -> None:
    g = GraphBuilder()
    rng = np.random.default_rng(0)
    w1 = g.node("Constant", [], value=onnx.numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype(np.float32)))
    c = g.node("Conv", ["x", w1], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    w2 = g.node("Constant", [], value=onnx.numpy_helper.from_array(rng.standard_normal((4, 6, 3, 3)).astype(np.float32)))
    _imports_and_prunes(g.build([g.node("Conv", [g.node("Relu", [c]), w2], kernel_shape=[3, 3], pads=[1, 1, 1, 1])]))


def test_an_optional_input_written_as_empty_at_the_end_is_left_out() -> None:
    # torch writes F.normalize's clamp as Clip(x, min, "") — an embedding model's last steps
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    pooled = g.node("Flatten", [g.node("GlobalAveragePool", [g.node("Relu", [g.conv("x", 3, 6)])])])
    norm = g.node("ReduceL2", [pooled], axes=[1], keepdims=1)
    clipped = g.node("Clip", [norm, g.init(np.array(1e-12, np.float32)), ""])
    _imports_and_prunes(g.build([g.node("Div", [pooled, clipped])]), prunable=0)
