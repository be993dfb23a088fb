"""One onnxruntime pass over the calibration images for everything the preparation needs of them.

The original's outputs (the scoring loss's targets), the per-channel mean and variance of the
convs whose BatchNorm was folded (to put it back for fine-tuning) and the extremes of every tensor
a prunable group's consumer reads (dead and constant channels, for the lossless pass) all come
from running the same images through the same model; each used to be a pass of its own, and the
three passes made about a third of a short run's fixed costs (``benchmarks/overhead.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper

from ..criteria.observe import as_channels
from ..criteria.parts import extremes as max_and_negated_min
from ..graph.channels import TensorChannels
from ..graph.runtime import fixed_at_one, make_session
from ..graph.shapes import expose_all

__all__ = ["Calibration", "calibrate", "ACTIVATION_VALUES"]

ACTIVATION_VALUES = 1 << 27  # float32 activation values one batch may hold (512 MB)
MOST_AT_ONCE = 16


@dataclass(frozen=True)
class Calibration:
    outputs: list[np.ndarray]  # the graph's outputs on every input, in order
    mean: dict[str, np.ndarray] = field(default_factory=dict)  # per channel (axis 1) of each statistics tensor
    var: dict[str, np.ndarray] = field(default_factory=dict)
    extremes: dict[str, np.ndarray] = field(default_factory=dict)  # [max, −min] per channel


def calibrate(model: onnx.ModelProto, input_name: str, inputs: np.ndarray, statistics: Sequence[str] = (),
              extremes: Mapping[str, TensorChannels] | None = None, *,
              shapes: Mapping[str, tuple[int, ...]]) -> Calibration:
    """Run ``model`` over ``inputs`` once, batch by batch, and reduce as it goes (no activation of
    the whole set is held): its outputs, mean and variance per channel of the ``statistics``
    tensors (NC… layout), and the extremes per channel of the ``extremes`` tensors (by their
    channel layout). ``shapes``: every tensor's at batch 1.

    The reductions run inside onnxruntime, added to a copy of the graph, so only one value per
    channel leaves it; a tensor whose channels are interleaved with another axis (flattened) is
    read out whole and reduced here."""
    extremes = dict(extremes or {})
    given = {i.name for i in model.graph.input}
    outputs = [o.name for o in model.graph.output]
    in_graph = {t: layout for t, layout in extremes.items() if t not in given and layout.outer == layout.inner == 1}
    reducing, reduced = _with_reductions(model, statistics, in_graph, shapes)
    whole = [t for t in extremes if t not in given and t not in in_graph]
    names = list(dict.fromkeys([*outputs, *reduced, *whole]))
    session = make_session(expose_all(reducing, [*reduced, *whole]))
    # a file that takes one input at a time is run so: its reductions hold no batch axis to join along
    batch = 1 if fixed_at_one(model) else _batch(inputs, [o for n in model.graph.node for o in n.output], shapes)
    chunks: list[list[np.ndarray]] = []
    moments = {name: _Moments() for name in statistics}
    found: dict[str, np.ndarray] = {}

    def keep_extremes(tensor: str, here: np.ndarray) -> None:
        found[tensor] = here if tensor not in found else np.maximum(found[tensor], here)

    for start in range(0, len(inputs), batch):
        x = inputs[start : start + batch]
        values = dict(zip(names, session.run(names, {input_name: x})))
        values.update({t: x for t in extremes if t in given})
        chunks.append([values[o] for o in outputs])
        for name in statistics:
            per_sample = int(np.prod(shapes[name][2:]))
            moments[name].add(len(x) * per_sample, *(values[f"{name}/{_MARK}/{k}"] for k in ("mean", "m2", "drift")))
        for tensor in in_graph:
            keep_extremes(tensor, np.concatenate([values[f"{tensor}/{_MARK}/max"], -values[f"{tensor}/{_MARK}/min"]]))
        for tensor in (t for t in extremes if t not in in_graph):
            # max and min are exact in float32
            keep_extremes(tensor, max_and_negated_min(as_channels(torch.from_numpy(values[tensor]),
                                                                  extremes[tensor])).numpy())
    joined = [np.concatenate([c[i] for c in chunks]) for i in range(len(outputs))]
    return Calibration(joined, {k: np.asarray(m.mean) for k, m in moments.items()},
                       {k: np.asarray(m.var) for k, m in moments.items()},
                       {t: v.astype(np.float64) for t, v in found.items()})


_MARK = "onnxprune_calibration"


def _with_reductions(model: onnx.ModelProto, statistics: Sequence[str], extremes: Mapping[str, TensorChannels],
                     shapes: Mapping[str, tuple[int, ...]]) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` that also computes, per batch: for each statistics tensor its mean
    per channel, the sum of squares around it and the mean around it (what float32 rounding of
    the mean left, taken out again when batches merge); for each extremes tensor its max and min
    per channel. Returns the copy and the names of those outputs."""
    if not statistics and not extremes:
        return model, []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph, names = copy.graph, []

    def reduce(op: str, x: str, axes: list[int], out: str, keepdims: int) -> str:
        if opset >= 18:  # axes became an input
            axes_name = f"{out}/axes"
            graph.initializer.append(numpy_helper.from_array(np.asarray(axes, np.int64), axes_name))
            graph.node.append(helper.make_node(op, [x, axes_name], [out], name=out, keepdims=keepdims))
        else:
            graph.node.append(helper.make_node(op, [x], [out], name=out, axes=axes, keepdims=keepdims))
        return out

    for t in statistics:
        axes = [0, *range(2, len(shapes[t]))]
        base = f"{t}/{_MARK}"
        mean = reduce("ReduceMean", t, axes, f"{base}/mean", 1)
        graph.node.append(helper.make_node("Sub", [t, mean], [f"{base}/centred"], name=f"{base}/centred"))
        names += [mean, reduce("ReduceSumSquare", f"{base}/centred", axes, f"{base}/m2", 0),
                  reduce("ReduceMean", f"{base}/centred", axes, f"{base}/drift", 0)]
    for t, layout in extremes.items():
        axes = [k for k in range(len(shapes[t])) if k != layout.axis]
        names += [reduce("ReduceMax", t, axes, f"{t}/{_MARK}/max", 0), reduce("ReduceMin", t, axes, f"{t}/{_MARK}/min", 0)]
    return copy, names


class _Moments:
    """Per-channel mean and variance, merged batch by batch in float64 (Chan et al.) from each
    batch's own mean and sum of squares around it, so a large mean does not swamp a small variance."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | float = 0.0
        self.m2: np.ndarray | float = 0.0

    def add(self, n: int, mean: np.ndarray, m2: np.ndarray, drift: np.ndarray) -> None:
        """A batch of ``n`` values per channel: their mean (as float32 rounded it), the sum of
        squares around that and the mean around that."""
        mean = mean.astype(np.float64).reshape(-1)
        drift = drift.astype(np.float64)
        m2 = m2.astype(np.float64) - n * drift**2  # around the batch's exact mean
        mean = mean + drift
        delta, total = mean - self.mean, self.n + n
        self.m2 = self.m2 + m2 + delta**2 * self.n * n / total
        self.mean = self.mean + delta * n / total
        self.n = total

    @property
    def var(self) -> np.ndarray:
        return np.maximum(self.m2 / self.n, 0.0)


def _batch(inputs: np.ndarray, activations: list[str], shapes: Mapping[str, tuple[int, ...]]) -> int:
    """Inputs per run: as many as keep every activation of the graph within ``ACTIVATION_VALUES``
    (an upper bound of what the session holds at once: read-out tensors are among them)."""
    per_input = int(np.prod(inputs.shape[1:])) + sum(int(np.prod(shapes[a][1:])) for a in activations if a in shapes)
    return max(1, min(MOST_AT_ONCE, ACTIVATION_VALUES // max(per_input, 1)))
