"""Prune → INT8: onnxruntime's static quantization of the verified model.

QDQ format (QuantizeLinear/DequantizeLinear pairs that onnxruntime fuses into integer kernels,
and that other runtimes read too), weights int8 per output channel, activations uint8 with
ranges calibrated (min/max) on the run's calibration images. Weights use 7 of their 8 bits
(``reduce_range``): onnxruntime's u8×s8 kernels on x86 CPUs without VNNI add pairs of products
in 16 bits, which saturate with full-range weights — on the pruned ResNet sample that cost 9.6
points of accuracy with 8 bits and none with 7 (the kernels, and so the speed, are the same). onnxruntime's own pre-processing
runs first: shape inference and the basic graph optimizations, which fold BatchNorm into the
convs so that they quantize as one op.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx

from .errors import OnnxpruneError

__all__ = ["quantize_int8"]

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
            quantize_static(str(prepared), str(quantized), Batches(), quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=reduce_range, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8)
        except Exception as err:  # onnxruntime's tools raise bare exceptions for graphs they cannot handle
            raise OnnxpruneError(f"INT8 quantization failed in onnxruntime's quantizer: {err}".splitlines()[0]) from err
        result = onnx.load(str(quantized))
    log.info("quantized to INT8 (QDQ, per-channel weights, %d calibration images): %.1f MB → %.1f MB",
             len(calibration), model.ByteSize() / 1e6, result.ByteSize() / 1e6)
    return result
