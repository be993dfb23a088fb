"""The verification contract: no file is written unless the ONNX checker (full check), strict
shape inference and onnxruntime on held-out inputs accept it. The pruned float model must also
agree with the pruned torch model — within the tolerance, or, where the graph's own float32
rounding is larger, as near the torch model's float64 answer as its float32 one is. Where
onnxruntime's fused kernels are what rounds further, the graph is read with its plain kernels
(basic optimizations) by the same rule, and the fused answer must stay near the plain one; the
INT8 model, whose numbers differ by design, must give outputs of the float model's shapes, all
finite (its quality is judged against --max-drop)."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import torch

from ..data.sources import Dataset
from ..errors import OnnxpruneError, first_line
from ..graph.output_axes import BatchAxis, batch_first
from ..graph.runtime import batches, make_session
from ..graph.tolerance import SCALE_FLOOR, TOLERANCE, max_difference
from ..torchview.importer import torch_outputs

__all__ = ["verify", "verify_quantized", "check_valid", "rounding_explains", "fusion_explains"]

ROUNDING_MARGIN = 4  # how much further than torch's own float32 rounding onnxruntime may be
# onnxruntime's fused kernels against its plain ones, relative to the outputs' scale: on PP-OCRv4's
# DB text detector, the original file as shipped, they differ by up to 4e-4 of a sigmoid map (the
# pruned one by 8e-4) while the plain kernels are as near the float64 answer as torch (1e-4); a
# wrong slice or weight moves outputs by far more
FUSED_TOLERANCE = 1e-2


def verify(model: onnx.ModelProto, module: torch.nn.Module, input_name: str, inputs: np.ndarray | Dataset,
           fixed_batch: int | None = None, output_axes: tuple[BatchAxis, ...] = (), batch: int = 32,
           torch_model: onnx.ModelProto | None = None) -> float:
    """Raise unless the model is valid and matches the torch module; returns the max abs error.

    Compared batch by batch; a model with a ``fixed_batch`` (the user's signature) is run in
    batches of that size, and a last, smaller batch is left out. The written model has its
    outputs' batch where the file had it (``output_axes``); the torch view, imported from
    ``torch_model`` (default ``model``), has it first.
    """
    check_valid(model, "pruned")
    step = fixed_batch or batch
    torch_model = torch_model or model
    worst = 0.0
    session = plain_session = None
    module.eval()
    for x in batches(inputs, step):
        if fixed_batch and len(x) < fixed_batch:
            if worst or session is not None:
                break
            x = _filled(x, fixed_batch)  # too few for one batch
        session = session or _session(model, "pruned")
        reference = _run(session, input_name, x, "pruned")
        with torch.no_grad():
            ours = torch_outputs(module, torch_model, torch.from_numpy(x))
        if output_axes:
            reference = [batch_first(r, where) for r, where in zip(reference, output_axes)]
        wide = None  # the torch model in float64, where float32 rounding must be told from a fault
        plain = None  # onnxruntime's answer with its plain kernels, where the fused ones round further
        for k, (tensor, b) in enumerate(zip(ours, reference)):
            a = tensor.numpy()
            if a.shape != b.shape:
                raise OnnxpruneError(f"pruned model output shape {b.shape} differs from torch's {a.shape}")
            diff, scale, close = max_difference([a], [b])
            if not close and wide is None:
                wide = _in_float64(module, torch_model, x)
            exact = None if wide is None else wide[k]
            worst = max(worst, diff)
            if close or rounding_explains(b, a, exact, scale):
                continue
            if plain is None:
                plain_session = plain_session or _session(model, "pruned", fused=False)
                plain = _run(plain_session, input_name, x, "pruned")
                if output_axes:
                    plain = [batch_first(p, where) for p, where in zip(plain, output_axes)]
            if not fusion_explains(b, plain[k], a, exact, scale):
                raise OnnxpruneError(
                    f"onnxruntime and the pruned torch model differ by {diff:.3g} (outputs up to {scale:.3g}); "
                    "nothing was written — please report this model"
                )
    return worst


def rounding_explains(written: np.ndarray, ours: np.ndarray, exact: np.ndarray | None, scale: float) -> bool:
    """Whether onnxruntime's outputs (``written``), further than the tolerance from the torch
    model's float32 ones (``ours``), are still as near the torch model's float64 outputs
    (``exact``) as float32 rounding takes the torch model itself, give or take ``ROUNDING_MARGIN``:
    a deep graph with large values in it (a text detector's logits before its sigmoid) rounds
    differently in each runtime, a wrong slice is wrong by far more."""
    if exact is None:
        return False
    own = float(np.abs(ours.astype(np.float64) - exact).max(initial=0.0))
    theirs = float(np.abs(written.astype(np.float64) - exact).max(initial=0.0))
    return theirs <= ROUNDING_MARGIN * max(own, TOLERANCE * max(scale, SCALE_FLOOR))


def fusion_explains(written: np.ndarray, plain: np.ndarray, ours: np.ndarray, exact: np.ndarray | None,
                    scale: float) -> bool:
    """Whether onnxruntime's fused answer (``written``), further from the torch model's than its
    rounding explains, is onnxruntime's own rounding: its plain kernels' answer (``plain``) agrees
    with the torch model by the usual rule, and the fused answer is within ``FUSED_TOLERANCE`` of
    the plain one. A fault in the graph shows in the plain kernels too."""
    plain_diff, _, close = max_difference([plain], [ours])
    if not close and not rounding_explains(plain, ours, exact, scale):
        return False
    fused_diff = float(np.abs(written.astype(np.float64) - plain).max(initial=0.0))
    return fused_diff <= FUSED_TOLERANCE * max(scale, SCALE_FLOOR)


def _in_float64(module: torch.nn.Module, torch_model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray] | None:
    """The torch model's outputs computed in float64 (a copy), or None where it cannot run so."""
    try:
        wide = copy.deepcopy(module).double()
        with torch.no_grad():
            return [o.double().numpy() for o in torch_outputs(wide, torch_model, torch.from_numpy(x).double())]
    except Exception:  # an op that keeps float32 constants: no float64 answer, the plain rule stands
        return None


def check_valid(model: onnx.ModelProto, what: str) -> None:
    """The ONNX checker with its full check, and strict shape inference with type checks."""
    try:
        onnx.checker.check_model(model, full_check=True)
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except Exception as err:
        raise OnnxpruneError(f"the {what} model fails the ONNX checker ({first_line(err)}); nothing was "
                             "written") from err


def verify_quantized(model: onnx.ModelProto, float_model: onnx.ModelProto, input_name: str,
                     inputs: np.ndarray | Dataset, fixed_batch: int | None = None, batch: int = 8) -> None:
    """Raise unless the INT8 ``model`` is valid, runs in onnxruntime and gives outputs of
    ``float_model``'s shapes, all finite, on the first batch of ``inputs``."""
    check_valid(model, "INT8")
    step = fixed_batch or batch
    x = next(batches(inputs, step))
    if fixed_batch and len(x) < fixed_batch:
        x = _filled(x, fixed_batch)
    quantized = _run(_session(model, "INT8"), input_name, x, "INT8")
    reference = _run(_session(float_model, "pruned"), input_name, x, "pruned")
    for q, f in zip(quantized, reference):
        if q.shape != f.shape:
            raise OnnxpruneError(f"the INT8 model's output shape {q.shape} differs from the float model's {f.shape}; "
                                 "nothing was written — please report this model")
        if np.issubdtype(q.dtype, np.floating) and not np.isfinite(q).all():
            raise OnnxpruneError("the INT8 model gives non-finite outputs; nothing was written — leave out --quantize")


def _filled(x: np.ndarray, size: int) -> np.ndarray:
    """``x`` repeated to exactly ``size`` inputs: a file with a fixed batch runs no other."""
    return np.concatenate([x] * -(-size // len(x)))[:size]


def _session(model: onnx.ModelProto, what: str, fused: bool = True):
    try:
        return make_session(model, fused=fused)
    except Exception as err:
        raise OnnxpruneError(f"onnxruntime cannot load the {what} model ({first_line(err)}); nothing was "
                             "written") from err


def _run(session, input_name: str, x: np.ndarray, what: str) -> list[np.ndarray]:
    try:
        return session.run(None, {input_name: x})
    except Exception as err:
        raise OnnxpruneError(f"onnxruntime cannot run the {what} model ({first_line(err)}); nothing was "
                             "written") from err

