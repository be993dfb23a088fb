"""How good a model is on held-out data: accuracy with labels, agreement with the original."""

from __future__ import annotations

import numpy as np

__all__ = ["compare_outputs"]


def compare_outputs(
    outputs: list[np.ndarray], reference: list[np.ndarray], labels: np.ndarray | None
) -> dict[str, float]:
    """Accuracy (with labels), top-1 agreement (classifiers), cosine similarity and MSE."""
    out, ref = outputs[0].astype(np.float64), reference[0].astype(np.float64)
    result: dict[str, float] = {}
    if out.ndim == 2 and out.shape[1] >= 2:
        result["top1_agreement"] = float((out.argmax(1) == ref.argmax(1)).mean())
        if labels is not None:
            result["accuracy"] = float((out.argmax(1) == labels).mean())
    flat_out, flat_ref = out.reshape(len(out), -1), ref.reshape(len(ref), -1)
    norm_out, norm_ref = np.linalg.norm(flat_out, axis=1), np.linalg.norm(flat_ref, axis=1)
    denom = norm_out * norm_ref
    # no floor on the denominator: a detector's near-empty maps (norms ~1e-7) are still directions;
    # two all-zero outputs are the same output (1), one all-zero against another is not (0)
    both_zero = (norm_out == 0) & (norm_ref == 0)
    cosine = np.where(denom > 0, (flat_out * flat_ref).sum(1) / np.where(denom > 0, denom, 1.0), both_zero)
    result["cosine"] = float(cosine.mean())
    result["mse"] = float(((flat_out - flat_ref) ** 2).mean())
    return result
