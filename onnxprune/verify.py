"""The verification contract: no pruned file unless the checker, strict shape inference and
onnxruntime on held-out inputs agree with the pruned torch model."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from .errors import OnnxpruneError
from .importer import torch_outputs
from .metrics import max_difference
from .runtime import make_session

__all__ = ["verify", "run_batched"]


def run_batched(model: onnx.ModelProto, name: str, inputs: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    """onnxruntime outputs for many inputs, in batches (one session)."""
    session = make_session(model)
    chunks: list[list[np.ndarray]] = []
    for start in range(0, len(inputs), batch):
        chunks.append(session.run(None, {name: inputs[start : start + batch]}))
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def verify(model: onnx.ModelProto, module: torch.nn.Module, input_name: str, inputs: np.ndarray,
           fixed_batch: int | None = None) -> float:
    """Raise unless the model is valid and matches the torch module; returns the max abs error.

    A model with a ``fixed_batch`` (the user's signature) is run in batches of that size.
    """
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as err:
        raise OnnxpruneError(f"the pruned model fails the ONNX checker ({err}); nothing was written") from err
    if fixed_batch:
        inputs = inputs[: max(fixed_batch, len(inputs) // fixed_batch * fixed_batch)]
    step = fixed_batch or len(inputs)
    try:
        session = make_session(model)
        chunks = [session.run(None, {input_name: inputs[i : i + step]}) for i in range(0, len(inputs), step)]
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OnnxpruneError(f"onnxruntime cannot run the pruned model ({first}); nothing was written") from err
    reference = [np.concatenate([c[k] for c in chunks]) for k in range(len(chunks[0]))]
    with torch.no_grad():
        ours = torch_outputs(module.eval(), model, torch.from_numpy(inputs))
    worst = 0.0
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
