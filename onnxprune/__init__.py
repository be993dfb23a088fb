"""onnxprune: structured channel pruning for ONNX CNNs."""

from __future__ import annotations

from .errors import OnnxpruneError

__version__ = "0.1.0"

__all__ = ["OnnxpruneError", "__version__"]
