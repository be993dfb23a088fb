"""onnxprune: structured channel pruning for ONNX CNNs."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import OnnxpruneError  # noqa: E402


def prune(model, data, target_flops: float = 0.3, **options):
    """Prune an ONNX model; see ``onnxprune.prune.prune`` (imported lazily: torch is heavy)."""
    from .prune import prune as _prune

    return _prune(model, data, target_flops, **options)


def analyze(model, input_size=None):
    """What ``onnxprune analyze --json`` prints, as a dict."""
    from .analyze import analyze as _analyze

    return _analyze(model, input_size)


__all__ = ["OnnxpruneError", "__version__", "prune", "analyze"]
