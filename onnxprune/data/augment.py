"""Augmentation of fine-tuning inputs: which views of each image the student trains on.

The teacher (the original model) is run on the very same augmented batch, so distillation stays
consistent whatever the view: consistent teaching (Beyer et al., 2022). Labels do not move with
the image, which is why ``auto`` augments only classifiers:

- ``shift``: the centred view rolled by up to 1/16 of H and W (keeps everything in frame but
  the border);
- ``crop``: a random region of 25–100 % of the image's area, aspect 3:4 to 4:3, resized to the
  model's input (the usual view for training on photos);
- ``crop-flip``: the same, mirrored half of the time;
- ``none``: the centred view (the same one calibration and validation use);
- ``auto``: ``shift`` when the model's first output is a classifier's (batch, classes), ``none``
  for detectors, segmenters and other maps (whose teacher outputs may then be cached).

``benchmarks/augment.py`` chose ``auto``: on the three sample classifiers shift kept the most
held-out accuracy, crop did no better than none, and a mirror cost points (digits, like text
orientation, change meaning when mirrored), so crop-flip is there to ask for, never the default.

Each view is drawn from a generator seeded by (seed, round, draw number), so the batches are the
same whatever the number of DataLoader workers or processes, and a resumed run draws what the
uninterrupted one drew.
"""

from __future__ import annotations

import math

import numpy as np

from ..graph.output_axes import is_classifier_output
from .sources import CENTRE, View

__all__ = ["MODES", "resolve_mode", "draw_view"]

MODES = ("auto", "none", "shift", "crop", "crop-flip")
AREA = (0.25, 1.0)
ASPECT = (3 / 4, 4 / 3)
MAX_SHIFT = 1 / 16


def resolve_mode(mode: str, first_output_shape: tuple[int, ...]) -> str:
    """``auto`` settled for the model: crop-flip for classifiers, none otherwise."""
    if mode != "auto":
        return mode
    return "shift" if is_classifier_output(first_output_shape) else "none"


def draw_view(mode: str, rng: np.random.Generator) -> View:
    if mode == "none":
        return CENTRE
    if mode == "shift":
        dy, dx = rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2)
        return View(dy=float(dy), dx=float(dx))
    if mode in ("crop", "crop-flip"):
        return _crop(rng, flip=mode == "crop-flip")
    raise ValueError(f"unknown augmentation {mode!r}")


def _crop(rng: np.random.Generator, flip: bool) -> View:
    """A random-resized-crop region as fractions of the image (fractions, not pixels, so the
    image's own size is not needed to draw it)."""
    area = rng.uniform(*AREA)
    aspect = math.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
    height = min(1.0, math.sqrt(area / aspect))
    width = min(1.0, math.sqrt(area * aspect))
    top = rng.uniform(0, 1 - height)
    left = rng.uniform(0, 1 - width)
    return View(top=float(top), left=float(left), height=height, width=width, flip=flip and bool(rng.random() < 0.5),
                cover=False)
