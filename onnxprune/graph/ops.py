"""What each ONNX op means for pruning, in one table that tracing, counting, soft pruning, the
lossless pass and the latency tables all read.

An op missing from the table blocks the channels it reads (tracing cannot follow them) and
costs no FLOPs. A new op is one row here plus, when no existing tracing rule fits, one ``Tracing`` member
and its handler in ``flow.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["Cost", "Tracing", "OpRule", "OPS", "rule"]


class Cost(Enum):
    """How ``flops.count`` costs a node."""

    MACS = "2 × multiply-accumulates"
    PER_OUTPUT = "one FLOP per output element"
    FREE = "nothing (data movement, comparisons, bookkeeping)"


class Tracing(Enum):
    """How ``flow.trace`` follows channels through an op: each member has one handler there
    (``flow.HANDLERS``; a test checks that every member has one)."""

    CONV = "conv"
    CONV_TRANSPOSE = "conv_transpose"
    GEMM = "gemm"
    MATMUL = "matmul"
    RECURRENT = "recurrent"
    BATCH_NORM = "batch_norm"
    INSTANCE_NORM = "instance_norm"
    LAYER_NORM = "layer_norm"
    LP_NORM = "lp_norm"
    MEAN_VARIANCE_NORM = "mean_variance_norm"
    ACROSS_CHANNELS = "across_channels"
    UNARY = "unary"
    ELEMENTWISE = "elementwise"
    CUMSUM = "cumsum"
    POOL = "pool"
    REDUCE = "reduce"
    SOFTMAX = "softmax"
    RESIZE = "resize"
    RESHAPE = "reshape"
    TRANSPOSE = "transpose"
    CONCAT = "concat"
    SPLIT = "split"
    SLICE = "slice"
    GATHER = "gather"
    PAD = "pad"
    NO_CHANNELS = "no_channels"


@dataclass(frozen=True)
class OpRule:
    """One op type's meaning for pruning."""

    trace: Tracing | None  # how tracing follows channels through it; None blocks them
    cost: Cost = Cost.FREE
    soft_zero_inputs: tuple[int, ...] = ()  # inputs whose per-channel constants soft pruning zeroes
    absorbs_constant: bool = False  # may take a constant input channel into its bias (lossless pass)
    timed_per_layer: bool = False  # the latency tables time it alone at each width


def _rows(names: str, trace: Tracing | None, cost: Cost = Cost.FREE, **rest) -> dict[str, OpRule]:
    return {name: OpRule(trace, cost, **rest) for name in names.split()}


_ALL = (0, 1, 2)

OPS: dict[str, OpRule] = {
    # producers and consumers of channels
    **_rows("Conv", Tracing.CONV, Cost.MACS, soft_zero_inputs=_ALL, absorbs_constant=True, timed_per_layer=True),
    **_rows("ConvTranspose", Tracing.CONV_TRANSPOSE, Cost.MACS, soft_zero_inputs=_ALL),
    **_rows("Gemm", Tracing.GEMM, Cost.MACS, soft_zero_inputs=_ALL, absorbs_constant=True),
    **_rows("MatMul", Tracing.MATMUL, Cost.MACS),
    **_rows("LSTM GRU", Tracing.RECURRENT, Cost.MACS),
    # per-channel normalization; the others mix channels
    **_rows("BatchNormalization", Tracing.BATCH_NORM, Cost.PER_OUTPUT, soft_zero_inputs=(1, 2)),
    **_rows("InstanceNormalization", Tracing.INSTANCE_NORM, Cost.PER_OUTPUT),
    **_rows("LayerNormalization", Tracing.LAYER_NORM, Cost.PER_OUTPUT),
    **_rows("LpNormalization", Tracing.LP_NORM, Cost.PER_OUTPUT),
    **_rows("MeanVarianceNormalization", Tracing.MEAN_VARIANCE_NORM, Cost.PER_OUTPUT),
    **_rows("GroupNormalization LRN", Tracing.ACROSS_CHANNELS, Cost.PER_OUTPUT),
    # one output element per input element
    **_rows("Relu LeakyRelu PRelu Elu Selu Celu Clip Sigmoid HardSigmoid HardSwish Tanh Softplus Softsign "
            "Gelu Mish Erf Exp Log Neg Abs Sqrt Reciprocal Floor Ceil Round Sign Sin Cos ThresholdedRelu",
            Tracing.UNARY, Cost.PER_OUTPUT),
    **_rows("Identity Cast Dropout Not IsNaN IsInf", Tracing.UNARY),
    **_rows("Add Sub Mul", Tracing.ELEMENTWISE, Cost.PER_OUTPUT, soft_zero_inputs=(0, 1)),
    **_rows("Div Max Min Sum Mean Pow", Tracing.ELEMENTWISE, Cost.PER_OUTPUT),
    **_rows("Where Equal Less Greater LessOrEqual GreaterOrEqual And Or Xor Mod", Tracing.ELEMENTWISE),
    **_rows("CumSum", Tracing.CUMSUM, Cost.PER_OUTPUT),
    # spatial pooling, reductions, softmax, resampling
    **_rows("MaxPool AveragePool LpPool GlobalAveragePool GlobalMaxPool", Tracing.POOL, Cost.PER_OUTPUT),
    **_rows("GlobalLpPool MaxRoiPool", Tracing.POOL),
    **_rows("ReduceMean ReduceSum ReduceMax ReduceMin ReduceProd ReduceL1 ReduceL2 ReduceSumSquare "
            "ReduceLogSum ReduceLogSumExp", Tracing.REDUCE, Cost.PER_OUTPUT),
    **_rows("Softmax LogSoftmax", Tracing.SOFTMAX, Cost.PER_OUTPUT),
    **_rows("Hardmax", Tracing.SOFTMAX),
    **_rows("Resize Upsample", Tracing.RESIZE, Cost.PER_OUTPUT),
    # data movement
    **_rows("Reshape Flatten Squeeze Unsqueeze", Tracing.RESHAPE),
    **_rows("Transpose", Tracing.TRANSPOSE),
    **_rows("Concat", Tracing.CONCAT),
    **_rows("Split", Tracing.SPLIT),
    **_rows("Slice", Tracing.SLICE),
    **_rows("Gather", Tracing.GATHER),
    **_rows("Pad", Tracing.PAD),
    **_rows("Shape Size Constant ConstantOfShape Range EyeLike RandomNormal RandomUniform", Tracing.NO_CHANNELS),
}

_UNKNOWN = OpRule(None)


def rule(op_type: str) -> OpRule:
    """The op's row; ops not in the table block their channels and cost nothing."""
    return OPS.get(op_type, _UNKNOWN)
