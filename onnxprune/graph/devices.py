"""Which device torch and onnxruntime run on. onnxruntime-gpu lists its CUDA provider whether or
not there is a GPU, so whether one exists is asked of torch, lazily: nothing else on the ONNX
side imports it."""

from __future__ import annotations

from ..errors import OnnxpruneError

__all__ = ["cuda_available", "onnxruntime_device", "torch_device", "run_devices"]


def cuda_available() -> bool:
    """True when onnxruntime has a CUDA provider and torch sees a GPU to back it."""
    try:
        import onnxruntime
        import torch

        return torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    except Exception:  # pragma: no cover - broken CUDA stacks count as none
        return False


def torch_device(requested: str) -> str:
    """Where torch fine-tunes: ``auto`` is CUDA when torch sees a GPU."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise OnnxpruneError("--device cuda was asked for but torch sees no CUDA GPU; use --device cpu")
    return requested


def onnxruntime_device(requested: str) -> str:
    """Where onnxruntime runs: ``auto`` is CUDA when its CUDA provider and a GPU are both there."""
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested == "cuda" and not cuda_available():
        raise OnnxpruneError("--device cuda was asked for but no CUDA GPU is available to onnxruntime "
                             "(is onnxruntime-gpu installed?); use --device cpu")
    return requested


def run_devices(requested: str) -> tuple[str, str]:
    """(torch's, onnxruntime's) device for a pruning run: fine-tuning on ``requested``, latency
    measured there too when onnxruntime can use it, else on the CPU."""
    trainer = torch_device(requested)
    return trainer, "cuda" if trainer == "cuda" and cuda_available() else "cpu"
