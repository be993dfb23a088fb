"""Which device onnxruntime runs on. onnxruntime-gpu lists its CUDA provider whether or not there
is a GPU, so whether one exists is asked of torch, lazily: nothing else on the ONNX side imports
it. Where torch itself trains is the torch view's choice (``torchview/devices.py``)."""

from __future__ import annotations

from ..errors import OnnxpruneError

__all__ = ["cuda_available", "onnxruntime_device"]


def cuda_available() -> bool:
    """True when onnxruntime has a CUDA provider and torch sees a GPU to back it."""
    try:
        import onnxruntime
        import torch

        return torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except Exception:  # pragma: no cover - broken CUDA stacks count as none
        return False


def onnxruntime_device(requested: str) -> str:
    """Where onnxruntime runs: ``auto`` is CUDA when its CUDA provider and a GPU are both there."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise OnnxpruneError("--device cuda was asked for but no CUDA GPU is available to onnxruntime "
                             "(is onnxruntime-gpu installed?); use --device cpu")
    return requested
