"""The one rule for "computes the same": importing, the lossless pass, the batch axes and
verification all judge two runs' outputs by it."""

from __future__ import annotations

import numpy as np

__all__ = ["max_difference", "within_tolerance", "TOLERANCE", "SCALE_FLOOR"]

TOLERANCE = 1e-4  # max abs error allowed, relative to the largest reference output value
# Below this output scale, float32 noise of a deep graph, not the outputs, sets the bar: a
# detector's sigmoid map on random inputs peaks near 6e-6 and differs by 1e-7 between exact
# implementations (PaddleOCR's det model).
SCALE_FLOOR = 1e-2


def max_difference(ours, reference) -> tuple[float, float, bool]:
    """(max abs difference, largest reference value, within the tolerance) over output pairs."""
    diff = scale = 0.0
    for a, b in zip(ours, reference):
        diff = max(diff, float(np.abs(np.asarray(a, dtype=np.float64) - b).max(initial=0.0)))
        scale = max(scale, float(np.abs(b).max(initial=0.0)))
    return diff, scale, within_tolerance(diff, scale)


def within_tolerance(diff: float, scale: float) -> bool:
    return diff <= TOLERANCE * max(scale, SCALE_FLOOR)
