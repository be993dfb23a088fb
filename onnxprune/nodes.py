"""Reading ONNX nodes: the one place that looks up an attribute."""

from __future__ import annotations

from typing import Any

import onnx

__all__ = ["attribute"]


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of ``node``'s attribute ``name``, or ``default`` when it is not set."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default
