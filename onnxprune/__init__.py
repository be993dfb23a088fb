"""onnxprune: structured channel pruning for ONNX CNNs.

    result = onnxprune.prune("model.onnx", "imgs/", target_flops=0.3)
    report = onnxprune.analyze("model.onnx")
"""

from __future__ import annotations

__version__ = "0.1.0"

from .analyze import analyze  # noqa: E402
from .errors import OnnxpruneError  # noqa: E402
from .prune import PruneOptions, PruneResult, prune  # noqa: E402  (binds the function, not the module)

__all__ = ["OnnxpruneError", "PruneOptions", "PruneResult", "__version__", "analyze", "prune"]
