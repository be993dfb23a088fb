"""Reading ONNX nodes: the one place that looks up an attribute."""

from __future__ import annotations

from typing import Any

import onnx

__all__ = ["attribute", "INSERTED_MARK", "is_inserted"]

# Names of the BatchNorm nodes (and their initializers) onnxprune adds for fine-tuning a model
# whose BatchNorm was folded (batchnorm.py); they are folded away before writing, so they cost
# nothing.
INSERTED_MARK = "onnxprune_bn"


def attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    """The value of ``node``'s attribute ``name``, or ``default`` when it is not set."""
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def is_inserted(node: onnx.NodeProto) -> bool:
    """A BatchNorm that onnxprune added for fine-tuning and will fold back into its conv."""
    return node.op_type == "BatchNormalization" and node.name.endswith(f"/{INSERTED_MARK}")
