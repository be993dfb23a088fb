"""What an output's shape alone says — a classifier's (batch, classes), the axis that holds its
features — read by the measures, the views and fine-tuning without loading onnx."""

from __future__ import annotations

__all__ = ["is_classifier_output", "feature_axis"]


def is_classifier_output(shape: tuple[int, ...]) -> bool:
    """(batch, classes) with two classes or more: scored by agreement and distilled by KL, where
    other outputs (maps, boxes) get per-feature measures."""
    return len(shape) == 2 and shape[1] >= 2


def feature_axis(shape: tuple[int, ...]) -> int:
    """The axis that holds an output's features: the channels of a map (N, C, …) and, for a
    rank-3 output, its shorter axis (a YOLOv8 head's 4 + classes rows beside its thousands of
    anchors; YOLOX's the other way round)."""
    return 2 if len(shape) == 3 and shape[2] < shape[1] else 1
