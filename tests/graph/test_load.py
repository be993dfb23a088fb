from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from graphs import GraphBuilder
from onnx import TensorProto, helper, numpy_helper

from onnxprune.errors import OnnxpruneError
from onnxprune.graph.load import load, unshare_initializers


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


def _small_cnn(batch="N") -> onnx.ModelProto:
    g = GraphBuilder(input_shape=(batch, 3, 8, 8))
    y = g.node("Relu", [g.bn(g.conv("x", 3, 4, bias=False), 4)])
    y = g.node("GlobalAveragePool", [y])
    return g.build([g.node("Flatten", [y])])


def test_refuse_missing_path(tmp_path: Path) -> None:
    with pytest.raises(OnnxpruneError, match="no such file"):
        load(tmp_path / "nope.onnx")


def test_refuse_directory(tmp_path: Path) -> None:
    with pytest.raises(OnnxpruneError, match="is a directory"):
        load(tmp_path)


def test_refuse_empty_file(tmp_path: Path) -> None:
    (tmp_path / "e.onnx").write_bytes(b"")
    with pytest.raises(OnnxpruneError, match="is empty"):
        load(tmp_path / "e.onnx")


def test_refuse_text_file(tmp_path: Path) -> None:
    (tmp_path / "t.onnx").write_text("hello, I am not a model\n" * 20)
    with pytest.raises(OnnxpruneError, match="not a readable ONNX model|holds no ONNX graph"):
        load(tmp_path / "t.onnx")


def test_refuse_truncated_model(tmp_path: Path) -> None:
    data = _small_cnn().SerializeToString()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) // 2])
    with pytest.raises(OnnxpruneError):
        load(tmp_path / "cut.onnx")


def test_refuse_model_without_conv(tmp_path: Path) -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    model = g.build([g.node("Relu", ["x"])])
    with pytest.raises(OnnxpruneError, match="no Conv"):
        load(_save(model, tmp_path / "m.onnx"))


def test_refuse_quantized_model(tmp_path: Path) -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    q = g.node("QuantizeLinear", ["x", g.init(np.float32(0.1)), g.init(np.uint8(0))])
    d = g.node("DequantizeLinear", [q, g.init(np.float32(0.1)), g.init(np.uint8(0))])
    model = g.build([g.conv(d, 3, 4)])
    with pytest.raises(OnnxpruneError, match="quantized"):
        load(_save(model, tmp_path / "q.onnx"))


def test_refuse_integer_input(tmp_path: Path) -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    g.input = helper.make_tensor_value_info("x", TensorProto.INT64, [1, 3, 8, 8])
    cast = g.node("Cast", ["x"], to=TensorProto.FLOAT)
    model = g.build([g.conv(cast, 3, 4)])
    with pytest.raises(OnnxpruneError, match="no float32 input of rank 4"):
        load(_save(model, tmp_path / "i.onnx"))


def test_refuse_float16_weights(tmp_path: Path) -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    w = g.init(np.ones((4, 3, 3, 3), np.float16))
    c = g.node("Cast", [w], to=TensorProto.FLOAT)
    model = g.build([g.node("Conv", ["x", c], kernel_shape=[3, 3])])
    with pytest.raises(OnnxpruneError, match="FLOAT16"):
        load(_save(model, tmp_path / "h.onnx"))


def test_refuse_training_mode_batchnorm(tmp_path: Path) -> None:
    model = _small_cnn()
    for node in model.graph.node:
        if node.op_type == "BatchNormalization":
            node.attribute.append(helper.make_attribute("training_mode", 1))
            node.output.extend(["running_mean_out", "running_var_out"])
    with pytest.raises(OnnxpruneError, match="training mode"):
        load(model)


def test_symbolic_spatial_dims_need_input_size(tmp_path: Path) -> None:
    g = GraphBuilder(input_shape=("N", 3, "H", "W"))
    model = g.build([g.conv("x", 3, 4)])
    with pytest.raises(OnnxpruneError, match="--input-size"):
        load(model)
    loaded = load(model, input_size=(16, 24))
    assert (loaded.image.height, loaded.image.width) == (16, 24)


def test_input_size_must_agree_with_static_dims() -> None:
    with pytest.raises(OnnxpruneError, match="--input-size gives height 16"):
        load(_small_cnn(), input_size=(16, 8))


def test_nhwc_input_layout_is_detected() -> None:
    g = GraphBuilder(input_shape=(1, 8, 8, 3))
    t = g.node("Transpose", ["x"], perm=[0, 3, 1, 2])
    loaded = load(g.build([g.conv(t, 3, 4)]))
    assert loaded.image.layout == "NHWC"
    assert loaded.image.shape(2) == (2, 8, 8, 3)


def test_normalize_keeps_batchnorm_and_symbolic_batch() -> None:
    loaded = load(_small_cnn())
    ops = [n.op_type for n in loaded.model.graph.node]
    assert "BatchNormalization" in ops
    dims = loaded.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "N"
    assert loaded.image.batch_dim == "N"


def test_normalize_folds_identity_and_keeps_model_identity() -> None:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    w = g.node("Identity", [g.rand(4, 3, 3, 3)])
    model = g.build([g.node("Conv", ["x", w], kernel_shape=[3, 3])])
    model.metadata_props.append(onnx.StringStringEntryProto(key="author", value="someone"))
    loaded = load(model)
    assert [n.op_type for n in loaded.model.graph.node] == ["Conv"]
    assert loaded.model.producer_name == "onnxprune-tests"
    assert loaded.model.ir_version == model.ir_version
    assert {p.key: p.value for p in loaded.model.metadata_props} == {"author": "someone"}


def test_unshare_gives_each_user_its_own_initializer() -> None:
    g = GraphBuilder(input_shape=(1, 4, 8, 8))
    bias = g.init(np.zeros(4, np.float32), "shared_bias")
    a = g.node("Conv", ["x", g.rand(4, 4, 1, 1), bias], kernel_shape=[1, 1])
    b = g.node("Conv", [a, g.rand(4, 4, 1, 1), bias], kernel_shape=[1, 1])
    model = g.build([b])
    assert unshare_initializers(model) == 1
    biases = [n.input[2] for n in model.graph.node]
    assert len(set(biases)) == 2
    arrays = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert all(np.array_equal(arrays[b], np.zeros(4)) for b in biases)


def test_load_never_modifies_the_input_file(tmp_path: Path) -> None:
    path = _save(_small_cnn(), tmp_path / "m.onnx")
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    load(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_external_data_loads(tmp_path: Path) -> None:
    model = _small_cnn()
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.data",
                    size_threshold=0)
    assert (tmp_path / "ext.data").exists()
    loaded = load(path)
    assert any(numpy_helper.to_array(i).size == 4 * 3 * 3 * 3 for i in loaded.model.graph.initializer)
