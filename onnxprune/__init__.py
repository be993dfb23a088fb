"""onnxprune: structured channel pruning for ONNX CNNs.

    result = onnxprune.prune("model.onnx", "imgs/", target_flops=0.3)
    report = onnxprune.analyze("model.onnx")

The ONNX side (load, flops, groups, flow, slice, analyze) needs no torch; ``prune`` and what
fine-tunes import it when first used, so ``onnxprune --version`` and ``analyze`` start fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .errors import OnnxpruneError  # noqa: E402

__all__ = ["OnnxpruneError", "PruneOptions", "PruneResult", "__version__", "analyze", "profile_device", "prune"]

_LAZY = {"analyze": "graph.analysis", "prune": "pipeline", "PruneOptions": "options", "PruneResult": "pipeline",
         "profile_device": "measure.device_table"}


def __getattr__(name: str) -> Any:
    """``onnxprune.prune`` and friends, imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'onnxprune' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value
