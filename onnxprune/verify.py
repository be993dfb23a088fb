"""The verification contract: no pruned file unless the checker, strict shape inference and
onnxruntime on held-out inputs agree with the pruned torch model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import onnx
import torch

from .output_axes import BatchAxis, batch_first
from .data import Dataset
from .errors import OnnxpruneError
from .importer import torch_outputs
from .metrics import max_difference
from .runtime import batch_for, make_session

__all__ = ["verify", "run_batched"]


def run_batched(model: onnx.ModelProto, name: str, inputs: np.ndarray | Dataset, batch: int | None = None
                ) -> list[np.ndarray]:
    """onnxruntime outputs for many inputs (an array, or a data set decoded batch by batch), in
    batches (one session) of ``runtime.batch_for`` inputs by default."""
    if batch is None:
        first = inputs[:1] if isinstance(inputs, np.ndarray) else inputs.batch([0])
        batch = batch_for(first[0].size)
    session = make_session(model)
    chunks = [session.run(None, {name: x}) for x in _batches(inputs, batch)]
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def _batches(inputs: np.ndarray | Dataset, size: int) -> Iterator[np.ndarray]:
    if isinstance(inputs, Dataset):
        yield from inputs.batches(size)
    else:
        for start in range(0, len(inputs), size):
            yield inputs[start : start + size]


def verify(model: onnx.ModelProto, module: torch.nn.Module, input_name: str, inputs: np.ndarray | Dataset,
           fixed_batch: int | None = None, output_axes: tuple[BatchAxis, ...] = (), batch: int = 32,
           torch_model: onnx.ModelProto | None = None) -> float:
    """Raise unless the model is valid and matches the torch module; returns the max abs error.

    Compared batch by batch; a model with a ``fixed_batch`` (the user's signature) is run in
    batches of that size, and a last, smaller batch is left out. The written model has its
    outputs' batch where the file had it (``output_axes``); the torch view, imported from
    ``torch_model`` (default ``model``), has it first.
    """
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as err:
        raise OnnxpruneError(f"the pruned model fails the ONNX checker ({err}); nothing was written") from err
    step = fixed_batch or batch
    torch_model = torch_model or model
    worst = 0.0
    session = None
    module.eval()
    for x in _batches(inputs, step):
        if fixed_batch and len(x) < fixed_batch:
            if worst or session is not None:
                break
            x = np.concatenate([x] * -(-fixed_batch // len(x)))[:fixed_batch]  # too few for one batch: repeat
        try:
            session = session or make_session(model)
            reference = session.run(None, {input_name: x})
        except Exception as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise OnnxpruneError(f"onnxruntime cannot run the pruned model ({first}); nothing was written") from err
        with torch.no_grad():
            ours = torch_outputs(module, torch_model, torch.from_numpy(x))
        if output_axes:
            reference = [batch_first(r, where) for r, where in zip(reference, output_axes)]
        for a, b in zip(ours, reference):
            a = a.numpy()
            if a.shape != b.shape:
                raise OnnxpruneError(f"pruned model output shape {b.shape} differs from torch's {a.shape}")
            diff, scale, close = max_difference([a], [b])
            if not close:
                raise OnnxpruneError(
                    f"onnxruntime and the pruned torch model differ by {diff:.3g} (outputs up to {scale:.3g}); "
                    "nothing was written — please report this model"
                )
            worst = max(worst, diff)
    return worst
