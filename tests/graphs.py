"""Tiny ONNX graphs built in code, for tests that need to know the exact answer."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

__all__ = ["GraphBuilder"]


class GraphBuilder:
    """Append nodes and seeded random initializers, then ``build()`` a checked model."""

    def __init__(self, input_shape=(1, 3, 8, 8), opset: int = 17, seed: int = 0, input_name="x"):
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.opset = opset
        self.input = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, list(input_shape))
        self.count = 0

    def init(self, array: np.ndarray, name: str | None = None) -> str:
        self.count += 1
        name = name or f"w{self.count}"
        self.inits.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def rand(self, *shape: int, scale: float = 0.5) -> str:
        return self.init((self.rng.standard_normal(shape) * scale).astype(np.float32))

    def node(self, op: str, inputs: list[str], n_out: int = 1, **attrs) -> str | list[str]:
        self.count += 1
        outs = [f"{op.lower()}{self.count}_{i}" for i in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=f"{op}_{self.count}", **attrs))
        return outs[0] if n_out == 1 else outs

    def conv(self, x: str, cin: int, cout: int, k: int = 3, group: int = 1, bias: bool = True,
             stride: int = 1) -> str:
        inputs = [x, self.rand(cout, cin // group, k, k)]
        if bias:
            inputs.append(self.rand(cout))
        return self.node("Conv", inputs, kernel_shape=[k, k], pads=[k // 2] * 4, group=group,
                         strides=[stride, stride])

    def bn(self, x: str, c: int) -> str:
        return self.node(
            "BatchNormalization",
            [x, self.init(self.rng.uniform(0.5, 1.5, c).astype(np.float32)), self.rand(c),
             self.rand(c), self.init(self.rng.uniform(0.5, 1.5, c).astype(np.float32))],
        )

    def build(self, outputs: list[str], ir_version: int = 8) -> onnx.ModelProto:
        outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs]
        graph = helper.make_graph(self.nodes, "test", [self.input], outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", self.opset)],
                                  producer_name="onnxprune-tests")
        model.ir_version = ir_version
        model = onnx.shape_inference.infer_shapes(model)
        onnx.checker.check_model(model, full_check=True)
        return model
