"""Residual blocks found on the ONNX graph and removed whole: the branch and its Add go, the skip
carries on, everything else keeps its name, and the file verifies against its torch import."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import SAMPLES
from onnx import TensorProto, helper, numpy_helper

from onnxprune.graph.blocks import Block, find_blocks, remove_blocks
from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load
from onnxprune.graph.runtime import run_model
from onnxprune.graph.shapes import random_feed
from onnxprune.stages.verify import verify
from onnxprune.torchview.view import TorchView


def _blocks(path) -> tuple[object, list[Block]]:
    loaded = load(path)
    return loaded, find_blocks(loaded.model, analyze_groups(loaded).shapes)


def _silenced(model: onnx.ModelProto, block: Block) -> onnx.ModelProto:
    """``model`` with the last node of ``block``'s branch giving zeros (its BatchNorm's scale and
    shift, or its conv's weight and bias, set to 0): what the model computes without the branch."""
    silent = onnx.ModelProto()
    silent.CopyFrom(model)
    by_name = {n.name: n for n in silent.graph.node}
    add = by_name[block.add]
    last = next(by_name[n] for n in block.nodes if add.input[0] in by_name[n].output or add.input[1] in by_name[n].output)
    zeroed = last.input[1:3] if last.op_type in ("BatchNormalization", "Conv") else []
    for init in silent.graph.initializer:
        if init.name in zeroed:
            init.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(init)), init.name))
    return silent


@pytest.mark.parametrize("name, identity, projection", [("digits_resnet.onnx", 3, 2), ("keras_mobilenetv2.onnx", 10, 0),
                                                         ("digits_vgg.onnx", 0, 0)])
def test_the_samples_residual_blocks_are_found(name: str, identity: int, projection: int) -> None:
    _, blocks = _blocks(SAMPLES / name)
    assert sum(b.identity for b in blocks) == identity and sum(not b.identity for b in blocks) == projection
    assert all(b.macs > 0 for b in blocks)


def test_a_removed_block_computes_what_the_model_computes_without_its_branch() -> None:
    """Each block alone, then all together: the written graph has none of the branch's nodes, the
    others keep their names, and its outputs are the model's with the branch giving zeros; the
    file verifies against its own torch import, as any slice does."""
    loaded, blocks = _blocks(SAMPLES / "digits_resnet.onnx")
    feed = random_feed(loaded.image, 4)
    names = {n.name for n in loaded.model.graph.node}
    for block in blocks:
        removed = remove_blocks(loaded.model, [block])
        onnx.checker.check_model(removed, full_check=True)
        assert {n.name for n in removed.graph.node} == names - {block.add, *block.nodes}
        expected = run_model(_silenced(loaded.model, block), feed)[0]
        assert np.allclose(run_model(removed, feed)[0], expected, atol=1e-4)
    every = remove_blocks(loaded.model, blocks)
    view = TorchView.of(every, loaded.image)
    assert verify(every, view.imported.module, loaded.image.name, feed[loaded.image.name]) < 1e-4
    assert analyze_groups(load(every)).groups  # and its channels can still be pruned


def _with_branch_read_elsewhere() -> onnx.ModelProto:
    """x → conv → relu → conv → Add(x, ·); the relu's output is also a second graph output."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(4, 4, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w"], ["b"], name="c2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["x", "b"], ["y"], name="add")]
    io = lambda name: helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", 4, 8, 8])  # noqa: E731
    graph = helper.make_graph(nodes, "g", [io("x")], [io("y"), io("r")], [w])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_a_block_whose_branch_feeds_anything_else_is_not_offered() -> None:
    model = _with_branch_read_elsewhere()
    shapes = {name: (1, 4, 8, 8) for name in ("x", "a", "r", "b", "y")} | {"w": (4, 4, 3, 3)}
    assert find_blocks(model, shapes) == []
    del model.graph.output[1]  # read by nothing else: a block
    (block,) = find_blocks(model, shapes)
    assert block.identity and block.nodes == ("c1", "relu", "c2")


@pytest.mark.slow
@pytest.mark.parametrize("name, identity, projection", [("resnet18", 5, 3), ("resnet50", 12, 4), ("mobilenet_v2", 10, 0)])
def test_torchvision_residual_blocks_are_found_and_removed_into_verified_files(zoo_model, name: str, identity: int,
                                                                             projection: int) -> None:
    loaded, blocks = _blocks(zoo_model(name, "torchscript"))
    assert sum(b.identity for b in blocks) == identity and sum(not b.identity for b in blocks) == projection
    half = blocks[1::2]
    removed = remove_blocks(loaded.model, half)
    view = TorchView.of(removed, loaded.image)
    assert verify(removed, view.imported.module, loaded.image.name, random_feed(loaded.image, 2)[loaded.image.name]) < 1e-3
    assert len(removed.graph.node) == len(loaded.model.graph.node) - sum(1 + len(b.nodes) for b in half)
