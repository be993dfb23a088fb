"""Prune → INT8: onnxruntime's static quantization of the verified model.

QDQ format (QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into integer kernels,
and that other runtimes read too), weights int8 per output channel, activations uint8 with
ranges calibrated (min/max) on the run's calibration images. Weights use 7 of their 8 bits
(``reduce_range``): onnxruntime's u8×s8 kernels on x86 CPUs without VNNI add pairs of products
in 16 bits, which saturate with full-range weights. The kernels, and so the speed, are the same
(benchmarks/results/deploy.txt has both; on the digits sample 8-bit weights cost a held-out
image that 7-bit ones do not). onnxruntime's own pre-processing runs first: shape inference and
the basic graph optimizations, which fold BatchNorm into the convs so that they quantize as one op.

What follows the last layer with weights stays in float: a detector's box decoding (sigmoids,
exponentials, grid offsets) concatenates values of very different ranges — pixel coordinates
and 0–1 scores — that one 8-bit scale cannot hold (quantized whole, a YOLOv8-style export's
outputs no longer explained the original's). The layers and everything between them are quantized.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from ..errors import OnnxpruneError, first_line

__all__ = ["quantize_int8", "float_tail"]

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 8


def quantize_int8(model: onnx.ModelProto, input_name: str, calibration: np.ndarray,
                  reduce_range: bool = True) -> onnx.ModelProto:
    """``model`` (float, batch free) quantized to INT8, its activation ranges taken on ``calibration``
    (``reduce_range=False``: weights at full 8-bit range, for comparison)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self.starts = iter(range(0, len(calibration), CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self.starts, None)
            if start is None:
                return None
            return {input_name: np.ascontiguousarray(calibration[start:start + CALIBRATION_BATCH], np.float32)}

    with tempfile.TemporaryDirectory(prefix="onnxprune-int8-") as tmp:
        source, prepared, quantized = (Path(tmp) / n for n in ("float.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save_model(model, str(source), save_as_external_data=model.ByteSize() > 1 << 30,
                        location="float.onnx.data")
        try:
            quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
            graph = onnx.load(str(prepared))
            for i, node in enumerate(graph.graph.node):  # the quantizer excludes nodes by name
                node.name = node.name or f"onnxprune_node_{i}"
            onnx.save_model(graph, str(prepared), save_as_external_data=graph.ByteSize() > 1 << 30,
                            location="prepared.onnx.data")
            tail = float_tail(graph)
            quantize_static(str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, nodes_to_exclude=tail)
        except Exception as err:  # onnxruntime's tools raise bare exceptions for graphs they cannot handle
            raise OnnxpruneError(f"INT8 quantization failed in onnxruntime's quantizer: {first_line(err)}") from err
        result = onnx.load(str(quantized))
    log.info("quantized to INT8 (QDQ, per-channel weights, %d calibration images): %.1f MB → %.1f MB",
             len(calibration), model.ByteSize() / 1e6, result.ByteSize() / 1e6)
    return result


_WEIGHTED = {"Conv", "ConvTranspose", "Gemm", "MatMul"}


def float_tail(model: onnx.ModelProto) -> list[str]:
    """The nodes no layer with weights follows: the model's post-processing, kept in float."""
    producer = {out: node for node in model.graph.node for out in node.output}
    feeds_weighted: set[str] = set()  # node names a weighted layer depends on (the layers too)
    stack = [n for n in model.graph.node if n.op_type in _WEIGHTED]
    while stack:
        node = stack.pop()
        if node.name in feeds_weighted:
            continue
        feeds_weighted.add(node.name)
        stack.extend(producer[i] for i in node.input if i in producer)
    return [n.name for n in model.graph.node if n.name not in feeds_weighted]
