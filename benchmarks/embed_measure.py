"""How much of the letter embedder's "neighbour agreement" drop (benchmarks/tasks.py) is its task
lost, and how much is the measure: the same 200 fresh letters, their labels kept.

For the original against itself under changes no user would call a change (Gaussian noise of
two grey levels, a one-pixel shift with the border repeated), and for the model pruned label-free
at --target with default options, it prints:

- exact neighbour: each image's nearest other image the same under both models (onnxprune's
  label-free measure of an embedding before commit 2026-12-07);
- within top-k: the pruned model's nearest image among the original's k nearest (top-5 is
  onnxprune's measure now, ``measure.roles.neighbours``);
- same letter as the original's: the pruned model's nearest image shows the letter the original's
  nearest shows (what a user retrieving by letter sees);
- letter retrieval: the nearest image shows the image's own letter (the task, with labels).

    python benchmarks/embed_measure.py [--target 0.5] [--images 240] [--work DIR]

Saves benchmarks/results/embed_measure.txt.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import task_models  # noqa: E402
from table import Table  # noqa: E402
from tasks import _prepare  # noqa: E402

from onnxprune import prune  # noqa: E402
from onnxprune.graph.runtime import run_model_each  # noqa: E402
from onnxprune.measure.roles import neighbours  # noqa: E402

FRESH_SEED = 200  # tasks.py renders its fresh letters from this seed


def _fresh_letters(count: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([8, FRESH_SEED])
    pairs = [task_models._letter(rng) for _ in range(count)]
    return np.stack([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _embed(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    x = task_models.to_input(images).numpy()
    name = model.graph.input[0].name  # the batch is fixed at 1, as torch exports it
    return np.concatenate([out[0] for out in run_model_each(model, [{name: x[i:i + 1]} for i in range(len(x))])])


def _nearest(e: np.ndarray) -> np.ndarray:
    """Each row's other rows by cosine similarity, nearest first."""
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = u @ u.T
    np.fill_diagonal(s, -np.inf)
    return np.argsort(-s, axis=1)


def _figures(mine: np.ndarray, theirs: np.ndarray, labels: np.ndarray) -> str:
    a, b = _nearest(mine), _nearest(theirs)
    exact = 100 * np.mean(a[:, 0] == b[:, 0])
    top = [100 * np.mean([a[i, 0] in b[i, :k] for i in range(len(a))]) for k in (3, 5)]
    assert abs(top[1] - 100 * neighbours(mine, theirs).value(np.arange(len(mine)))) < 1e-9  # type: ignore[operator]
    same_letter = 100 * np.mean(labels[a[:, 0]] == labels[b[:, 0]])
    retrieval = 100 * np.mean(labels[a[:, 0]] == labels)
    return f"{exact:>10.1f}{top[0]:>8.1f}{top[1]:>8.1f}{same_letter:>12.1f}{retrieval:>11.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=float, default=0.5)
    parser.add_argument("--images", type=int, default=240)
    parser.add_argument("--fresh", type=int, default=200)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "onnxprune-tasks")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    path, data, _, _ = _prepare("embedder", args.work, args.images, args.fresh)
    images, labels = _fresh_letters(args.fresh)
    original = onnx.load(str(path))
    reference = _embed(original, images)
    noisy = np.clip(images + np.random.default_rng(0).normal(0, 2, images.shape), 0, 255).astype(np.uint8)
    shifted = np.concatenate([images[:, :, :1], images[:, :, :-1]], axis=2)  # one pixel right, border repeated
    started = time.perf_counter()
    pruned = prune(path, data, args.target, max_drop=100).model
    seconds = time.perf_counter() - started
    table = Table("embed_measure.txt",
                  f"# the letter embedder, {args.fresh} fresh letters of 26 ({len(set(labels))} present), "
                  "figures in %;",
                  f"# pruned label-free to {args.target} of its FLOPs with default options from {args.images} images "
                  f"({seconds:.0f} s)",
                  f"{'model':<32}{'exact':>10}{'top-3':>8}{'top-5':>8}{'same letter':>12}{'retrieval':>11}",
                  f"{'original':<32}{'100.0':>10}{'100.0':>8}{'100.0':>8}{'100.0':>12}"
                  f"{100 * np.mean(labels[_nearest(reference)[:, 0]] == labels):>11.1f}")
    for name, x in (("original, noise of 2 grey levels", noisy), ("original, shifted by one pixel", shifted)):
        table.add(f"{name:<32}{_figures(_embed(original, x), reference, labels)}")
    table.add(f"{'pruned':<32}{_figures(_embed(pruned, images), reference, labels)}")
    table.add("# exact: the same nearest other image; top-k: the pruned model's nearest among the original's k "
              "nearest; "
              "same letter: its letter is that of the original's nearest; retrieval: its letter is the image's own")
    table.save()


if __name__ == "__main__":
    main()
