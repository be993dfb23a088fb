"""Augmentation of fine-tuning inputs: which views of each image the student trains on.

The teacher (the original model) is run on the very same augmented batch, so distillation stays
consistent whatever the view: consistent teaching (Beyer et al., 2022). Labels do not move with
the image, which is why ``auto`` augments only classifiers:

- ``shift``: the centred view rolled by up to 1/16 of H and W (keeps everything in frame but
  the border);
- ``crop``: a random region of 25–100 % of the image's area, aspect 3:4 to 4:3, resized to the
  model's input (the usual view for training on photos);
- ``crop-flip``: the same, mirrored half of the time;
- ``mix``: ``shift``, then per batch each input's contrast and brightness jittered, a little
  noise added, and each input mixed with another of the batch (mixup weights drawn uniformly):
  inputs no image of the data set is, which the original labels as readily as any ("function
  matching", Beyer et al. 2022) — the teacher sees the very same mixed batch
  (``finetune.mixed_views``), and a classifier's labels are mixed by the same weights;
- ``none``: the centred view (the same one calibration and validation use);
- ``auto``: ``mix`` when the run has no labels (the original is the only teacher), ``shift``
  for a classifier with labels (with its labels mixed, ``mix`` kept less accuracy on the
  character samples: ``benchmarks/results/augment-mixed-labels.txt``).

``benchmarks/augment.py`` chose ``shift`` for labelled classifiers: on the three sample classifiers
it kept the most held-out accuracy, crop did no better than none, and a mirror cost points
(digits, like text orientation, change meaning when mirrored), so crop-flip is there to ask for,
never the default. ``benchmarks/tasks.py`` chose ``mix`` for label-free runs: with 240 images
the pruned reader kept as many strings on fresh images as with 2000 plain ones.

Each view is drawn from a generator seeded by (seed, round, draw number), so the batches are the
same whatever the number of DataLoader workers or processes, and a resumed run draws what the
uninterrupted one drew.
"""

from __future__ import annotations

import math

import numpy as np

from ..graph.output_shapes import is_classifier_output
from .sources import CENTRE, View

__all__ = ["MODES", "resolve_mode", "draw_view", "judging_views"]

MODES = ("auto", "none", "shift", "crop", "crop-flip", "mix")
AREA = (0.25, 1.0)
ASPECT = (3 / 4, 4 / 3)
MAX_SHIFT = 1 / 16


def resolve_mode(mode: str, first_output_shape: tuple[int, ...], labels: bool = False) -> str:
    """``auto`` settled for the run: mix where the original is the only teacher (no labels), shift
    for a labelled classifier (it kept more accuracy than mix), none for other labelled runs (their
    labels do not follow a moved input)."""
    if mode != "auto":
        return mode
    if not labels:
        return "mix"
    return "shift" if is_classifier_output(first_output_shape) else "none"


def draw_view(mode: str, rng: np.random.Generator) -> View:
    if mode == "none":
        return CENTRE
    if mode in ("shift", "mix"):  # mix: the batch is jittered and mixed after (finetune.mixed_views)
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


def judging_views(count: int, seed: int, image: int) -> list[View]:
    """``count`` views of held-out image ``image`` to judge the pruned model on: the image itself first,
    then shifts of up to 1/16 of H and W, the border repeated into what a shift uncovers (not the
    far side wrapped round: a reader would read a wrapped character) — inputs as near the image as
    a camera would give, on which the original's outputs are the reference, safe for every task
    (no flip, no crop, no colour a text or a box would not keep)."""
    rng = np.random.default_rng([seed, 11, image])
    return [CENTRE] + [View(dy=float(dy), dx=float(dx), edge=True)
                       for dy, dx in rng.uniform(-MAX_SHIFT, MAX_SHIFT, (count - 1, 2))]
