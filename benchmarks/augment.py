"""Which fine-tuning views keep a pruned classifier closest to its original: none, shift,
random-resized crop, crop + horizontal flip; each sample classifier pruned to 30 % of its FLOPs
with the default schedule (hardware-aware widths off so only the views differ), the same seed.

    python benchmarks/augment.py [--models digits_resnet.onnx ...] [--epochs 10]

Prints held-out accuracy (labels) and top-1 agreement with the original per model and mode, and
saves the table to benchmarks/results/augment.txt.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from table import Table  # noqa: E402

from onnxprune import prune  # noqa: E402

SAMPLES = ROOT / "sample_models"
MODELS = ["digits_resnet.onnx", "digits_mobilenet.onnx", "digits_vgg.onnx", "digits_resnet.default.onnx"]
MODES = ["none", "shift", "crop", "crop-flip"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--modes", nargs="*", default=MODES)
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    table = Table("augment.txt",
                  f"# fine-tuning views: 30 % FLOPs, {args.epochs:g} epochs, seed {args.seed}, labels (imagefolder)",
                  f"{'model':<28}{'views':<11}{'accuracy':>9}{'before':>8}{'agreement':>10}{'time s':>8}")
    for name in args.models:
        for mode in args.modes:
            start = time.perf_counter()
            r = prune(SAMPLES / name, SAMPLES / "digits", 0.3, labels="imagefolder", augment=mode, round_to=1,
                      bench=False, epochs=args.epochs, seed=args.seed, max_drop=100).report
            q = r.quality
            table.add(f"{name:<28}{mode:<11}{q.after['accuracy']:>9.2%}{q.before['accuracy']:>8.2%}"
                      f"{q.after['top1_agreement']:>10.2%}{time.perf_counter() - start:>8.0f}")
    table.save()


if __name__ == "__main__":
    main()
