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

from .channels import TensorChannels
from .criteria.observe import as_channels
from .criteria.parts import extremes as max_and_negated_min
from .runtime import batch_for, make_session
from .shapes import expose_all

__all__ = ["Calibration", "calibrate", "EXPOSED_VALUES"]

EXPOSED_VALUES = 1 << 27  # float32 values one batch may expose at once (512 MB)
MOST_AT_ONCE = 16


@dataclass(frozen=True)
class Calibration:
    outputs: list[np.ndarray]  # the graph's outputs on every input, in order
    mean: dict[str, np.ndarray] = field(default_factory=dict)  # per channel (axis 1) of each statistics tensor
    var: dict[str, np.ndarray] = field(default_factory=dict)
    extremes: dict[str, np.ndarray] = field(default_factory=dict)  # [max, −min] per channel


def calibrate(model: onnx.ModelProto, input_name: str, inputs: np.ndarray, statistics: Sequence[str] = (),
              extremes: Mapping[str, TensorChannels] | None = None,
              shapes: Mapping[str, tuple[int, ...]] | None = None) -> Calibration:
    """Run ``model`` over ``inputs`` once, batch by batch, and reduce as it goes (no activation of
    the whole set is held): its outputs, mean and variance per channel of the ``statistics``
    tensors (NC… layout), and the extremes per channel of the ``extremes`` tensors (by their
    channel layout). ``shapes`` (every tensor's at batch 1) sizes the batches."""
    extremes = dict(extremes or {})
    given = {i.name for i in model.graph.input}
    outputs = [o.name for o in model.graph.output]
    exposed = list(dict.fromkeys([*statistics, *(t for t in extremes if t not in given)]))
    names = list(dict.fromkeys([*outputs, *exposed]))
    session = make_session(expose_all(model, exposed) if exposed else model)
    batch = _batch(inputs, names, shapes)
    chunks: list[list[np.ndarray]] = []
    moments = {name: _Moments() for name in statistics}
    found: dict[str, np.ndarray] = {}
    for start in range(0, len(inputs), batch):
        x = inputs[start : start + batch]
        values = dict(zip(names, session.run(names, {input_name: x})))
        values.update({t: x for t in extremes if t in given})
        chunks.append([values[o] for o in outputs])
        for name in statistics:
            moments[name].add(values[name])
        for tensor, layout in extremes.items():
            # max and min are exact in float32
            here = max_and_negated_min(as_channels(torch.from_numpy(values[tensor]), layout)).numpy()
            found[tensor] = here if tensor not in found else np.maximum(found[tensor], here)
    mean = {k: m.mean for k, m in moments.items()}
    var = {k: m.var for k, m in moments.items()}
    joined = [np.concatenate([c[i] for c in chunks]) for i in range(len(outputs))]
    return Calibration(joined, mean, var, {t: v.astype(np.float64) for t, v in found.items()})


class _Moments:
    """Per-channel mean and variance (axis 1), batch by batch: each batch's sum of squares is
    taken around its own mean in float32 and the batches are merged in float64 (Chan et al.), so
    no float64 copy of an activation is made and a large mean does not swamp a small variance."""

    def __init__(self) -> None:
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, v: np.ndarray) -> None:
        axes = (0, *range(2, v.ndim))
        n = v.size // v.shape[1]
        mean = v.sum(axis=axes, dtype=np.float64) / n
        centred = v - mean.astype(v.dtype).reshape(1, -1, *[1] * (v.ndim - 2))
        m2 = np.square(centred).sum(axis=axes, dtype=np.float64)
        m2 -= np.square(centred.sum(axis=axes, dtype=np.float64)) / n  # the float32 mean's own rounding
        delta, total = mean - self.mean, self.n + n
        self.m2 = self.m2 + m2 + delta**2 * self.n * n / total
        self.mean = self.mean + delta * n / total
        self.n = total

    @property
    def var(self) -> np.ndarray:
        return np.maximum(self.m2 / self.n, 0.0)


def _batch(inputs: np.ndarray, names: list[str], shapes: Mapping[str, tuple[int, ...]] | None) -> int:
    """Inputs per run: as many as keep the exposed tensors within ``EXPOSED_VALUES``."""
    per_input = int(np.prod(inputs.shape[1:]))
    if not shapes:
        return batch_for(per_input, most=MOST_AT_ONCE)
    per_input += sum(int(np.prod(shapes[n][1:])) for n in names if n in shapes)
    return max(1, min(MOST_AT_ONCE, EXPOSED_VALUES // max(per_input, 1)))
