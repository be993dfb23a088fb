"""What each ONNX op means for pruning, in one table that tracing, counting, soft pruning, the
lossless pass and the latency tables all read.

An op missing from the table blocks the channels it reads (tracing cannot follow them) and
costs no FLOPs. A new op is one row here plus, when no existing tracing rule fits, one handler
in ``flow.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Cost", "OpRule", "OPS", "rule"]


class Cost(Enum):
    """How ``flops.count`` costs a node."""

    MACS = "2 × multiply-accumulates"
    PER_OUTPUT = "one FLOP per output element"
    FREE = "nothing (data movement, comparisons, bookkeeping)"


@dataclass(frozen=True)
class OpRule:
    """One op type's meaning for pruning."""

    trace: str | None  # the ``flow._Tracer`` method that follows channels through it; None blocks them
    cost: Cost = Cost.FREE
    soft_zero_inputs: tuple[int, ...] = ()  # inputs whose per-channel constants soft pruning zeroes
    absorbs_constant: bool = False  # may take a constant input channel into its bias (lossless pass)
    timed_per_layer: bool = False  # the latency tables time it alone at each width


def _rows(names: str, trace: str | None, cost: Cost = Cost.FREE, **rest) -> dict[str, OpRule]:
    return {name: OpRule(trace, cost, **rest) for name in names.split()}


_ALL = (0, 1, 2)

OPS: dict[str, OpRule] = {
    # producers and consumers of channels
    **_rows("Conv", "conv", Cost.MACS, soft_zero_inputs=_ALL, absorbs_constant=True, timed_per_layer=True),
    **_rows("ConvTranspose", "conv_transpose", Cost.MACS, soft_zero_inputs=_ALL),
    **_rows("Gemm", "gemm", Cost.MACS, soft_zero_inputs=_ALL, absorbs_constant=True),
    **_rows("MatMul", "matmul", Cost.MACS),
    **_rows("LSTM GRU", "recurrent", Cost.MACS),
    # per-channel normalization; the others mix channels
    **_rows("BatchNormalization", "batch_norm", Cost.PER_OUTPUT, soft_zero_inputs=(1, 2)),
    **_rows("InstanceNormalization", "instance_norm", Cost.PER_OUTPUT),
    **_rows("LayerNormalization", "layer_norm", Cost.PER_OUTPUT),
    **_rows("LpNormalization", "lp_norm", Cost.PER_OUTPUT),
    **_rows("MeanVarianceNormalization", "mean_variance_norm", Cost.PER_OUTPUT),
    **_rows("GroupNormalization LRN", "across_channels", Cost.PER_OUTPUT),
    # one output element per input element
    **_rows("Relu LeakyRelu PRelu Elu Selu Celu Clip Sigmoid HardSigmoid HardSwish Tanh Softplus Softsign "
            "Gelu Mish Erf Exp Log Neg Abs Sqrt Reciprocal Floor Ceil Round Sign Sin Cos ThresholdedRelu",
            "unary", Cost.PER_OUTPUT),
    **_rows("Identity Cast Dropout Not IsNaN IsInf", "unary"),
    **_rows("Add Sub Mul", "elementwise", Cost.PER_OUTPUT, soft_zero_inputs=(0, 1)),
    **_rows("Div Max Min Sum Mean Pow", "elementwise", Cost.PER_OUTPUT),
    **_rows("Where Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor Mod", "elementwise"),
    **_rows("CumSum", "cumsum", Cost.PER_OUTPUT),
    # spatial pooling, reductions, softmax, resampling
    **_rows("MaxPool AveragePool LpPool GlobalAveragePool GlobalMaxPool", "pool", Cost.PER_OUTPUT),
    **_rows("GlobalLpPool MaxRoiPool", "pool"),
    **_rows("ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare "
            "ReduceLogSum ReduceLogSumExp", "reduce", Cost.PER_OUTPUT),
    **_rows("Softmax LogSoftmax", "softmax", Cost.PER_OUTPUT),
    **_rows("Hardmax", "softmax"),
    **_rows("Resize Upsample", "resize", Cost.PER_OUTPUT),
    # data movement
    **_rows("Reshape Flatten Squeeze Unsqueeze", "reshape"),
    **_rows("Transpose", "transpose"),
    **_rows("Concat", "concat"),
    **_rows("Split", "split"),
    **_rows("Slice", "slice_"),
    **_rows("Gather", "gather"),
    **_rows("Pad", "pad"),
    **_rows("Shape Size Constant ConstantOfShape Range EyeLike RandomNormal RandomUniform", "no_channels"),
}

_UNKNOWN = OpRule(None)


def rule(op_type: str) -> OpRule:
    """The op's row; ops not in the table block their channels and cost nothing."""
    return OPS.get(op_type, _UNKNOWN)
