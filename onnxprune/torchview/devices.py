"""Where torch fine-tunes, and with it where a pruning run measures latency."""

from __future__ import annotations

import torch

from ..errors import OnnxpruneError
from ..graph.devices import cuda_available

__all__ = ["torch_device", "run_devices"]


def torch_device(requested: str) -> str:
    """Where torch fine-tunes: ``auto`` is CUDA when torch sees a GPU."""
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise OnnxpruneError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    return requested


def run_devices(requested: str) -> tuple[str, str]:
    """(torch's, onnxruntime's) device for a pruning run: fine-tuning on ``requested``, latency
    measured there too when onnxruntime can use it, else on the CPU."""
    trainer = torch_device(requested)
    return trainer, "cuda" if trainer == "cuda" and cuda_available() else "cpu"
