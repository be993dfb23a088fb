"""onnxruntime sessions: one place that knows how to run an ONNX model."""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterator, Mapping
from typing import Protocol

import numpy as np
import onnx

from ..errors import OnnxpruneError, first_line
from .devices import onnxruntime_device

__all__ = ["run_batched", "batches", "batch_for", "BATCH_VALUES", "Batched", "make_session", "run_model",
           "run_model_each"]


class Batched(Protocol):
    """Inputs decoded on demand (``data.sources.Dataset``): what the runner needs of them."""

    def __len__(self) -> int: ...

    def batch(self, positions: list[int]) -> np.ndarray: ...

    def batches(self, size: int) -> Iterator[np.ndarray]: ...

log = logging.getLogger(__name__)

PROTOBUF_LIMIT = 2**31 - 1  # bytes: larger models go through external data


def _ort():
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # our own errors say what matters; ORT's warnings are noise
    return ort


BATCH_VALUES = 4 * 3 * 224 * 224  # input values per onnxruntime batch: 4 RGB 224×224 inputs, 64 of 56×56


def batch_for(values_per_input: int, most: int = 64) -> int:
    """How many inputs one onnxruntime run takes at once: as many as hold ``BATCH_VALUES``
    values, since the session's arena keeps its largest batch's activations while it lives."""
    return max(1, min(most, BATCH_VALUES // max(values_per_input, 1)))


def make_session(model: onnx.ModelProto, device: str = "cpu", threads: int | None = None,
                 spinning: bool = True, fused: bool = True):
    """An InferenceSession on the CPU or CUDA provider; the model may exceed protobuf's 2 GiB.

    ``spinning=False`` stops idle worker threads from busy-waiting: sessions timed side by side
    in one process would otherwise steal the cores from each other. ``fused=False`` keeps to
    onnxruntime's basic graph optimizations (no fused or re-laid-out kernels): the graph's own
    arithmetic, which verification reads where the fused kernels round differently.
    """
    ort = _ort()
    options = ort.SessionOptions()
    options.log_severity_level = 4  # fatal only: onnxprune turns a failed run into its own one-line error
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if onnxruntime_device(device) == "cuda":
        ort.preload_dlls()
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    else:
        providers = ["CPUExecutionProvider"]
    try:
        # serialized once: asking ByteSize() first would serialize a large model twice
        data = model.SerializeToString()
    except ValueError:  # over protobuf's 2 GiB: through a file with external data
        data = None
    if data is not None and len(data) < PROTOBUF_LIMIT:
        session = ort.InferenceSession(data, options, providers=providers)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            onnx.save_model(model, path, save_as_external_data=True, location="model.onnx.data")
            session = ort.InferenceSession(path, options, providers=providers)
    return OneAtATime(session) if fixed_at_one(model) else session


def fixed_at_one(model: onnx.ModelProto) -> bool:
    """Every input the graph is fed fixes its batch at 1 (a file whose batch could not be freed)."""
    given = {init.name for init in model.graph.initializer}
    fed = [vi for vi in model.graph.input if vi.name not in given]
    return bool(fed) and all(len(vi.type.tensor_type.shape.dim) > 0 and vi.type.tensor_type.shape.dim[0].dim_value == 1
                             for vi in fed)


class OneAtATime:
    """A session over a model that takes one input at a time: a batch of N runs as N runs, the
    outputs joined along their first axis (the batch's, for such a file: ``batch.one_at_a_time``)."""

    def __init__(self, session) -> None:
        self.session = session

    def run(self, outputs, feed: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        n = len(next(iter(feed.values())))
        if n <= 1:
            return self.session.run(outputs, dict(feed))
        runs = [self.session.run(outputs, {k: v[i:i + 1] for k, v in feed.items()}) for i in range(n)]
        return [np.concatenate([r[j] for r in runs]) for j in range(len(runs[0]))]

    def __getattr__(self, name: str):
        return getattr(self.session, name)


def run_model(
    model: onnx.ModelProto, feeds: Mapping[str, np.ndarray], outputs: list[str] | None = None
) -> list[np.ndarray]:
    """Run once on the CPU provider; raise OnnxpruneError if onnxruntime refuses the model."""
    return run_model_each(model, [feeds], outputs)[0]


def run_model_each(
    model: onnx.ModelProto, feeds: list[Mapping[str, np.ndarray]], outputs: list[str] | None = None
) -> list[list[np.ndarray]]:
    """Run on each of ``feeds`` in one session on the CPU provider; raise OnnxpruneError if
    onnxruntime refuses the model."""
    try:
        session = make_session(model)
        return [session.run(outputs, dict(feed)) for feed in feeds]
    except OnnxpruneError:
        raise
    except Exception as err:
        raise OnnxpruneError(f"onnxruntime cannot run the model: {first_line(err)}") from err


def run_batched(model: onnx.ModelProto, name: str, inputs: np.ndarray | Batched, batch: int | None = None
                ) -> list[np.ndarray]:
    """onnxruntime outputs for many inputs (an array, or a data set decoded batch by batch), in
    batches (one session) of ``runtime.batch_for`` inputs by default."""
    if batch is None:
        first = inputs[:1] if isinstance(inputs, np.ndarray) else inputs.batch([0])
        batch = batch_for(first[0].size)
    session = make_session(model)
    chunks = [session.run(None, {name: x}) for x in batches(inputs, batch)]
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def batches(inputs: np.ndarray | Batched, size: int) -> Iterator[np.ndarray]:
    """``inputs`` in batches of ``size``: an array sliced, a data set decoded batch by batch."""
    if isinstance(inputs, np.ndarray):
        for start in range(0, len(inputs), size):
            yield inputs[start : start + size]
    else:
        yield from inputs.batches(size)
