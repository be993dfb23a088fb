"""The compact character MobileNet sample at 30 % of its FLOPs, one setting changed at a time.

This sample (11.6 MFLOPs, groups of 16-160 channels) is where the selector's cost term matters
most: ranked by the milliseconds each FLOP saves, the default schedule took its late layers to
their floors and kept 39.0 % (``results/compact-2026-12-02-unbounded.txt``); the cost is now the
FLOPs weighted by their slowness, bounded (``onnxprune/select.py``). Each row changes one thing
against the default, over the same seeds, data and steps (``benchmarks/chars_task.py``): the
width step fixed (ranking by FLOPs alone), the cost term off. Each cell pools the seeds'
accuracy on 1,880 fresh renders, with the lowest and highest seed's and the width the layer
before the classifier kept.

    python benchmarks/compact.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chars_task import SAMPLES, accuracy_interval, fresh, predictions, prune_folder, seed_range  # noqa: E402
from table import Table  # noqa: E402

from onnxprune import prune  # noqa: E402

MODEL = "chars_mobilenet.onnx"
ROWS = {
    "default (--round-to auto)": {},
    "--round-to 16": {"round_to": 16},
    "--round-to 8": {"round_to": 8},
    "--flops-weight 0": {"flops_weight": 0.0},
}
LAST = "/last/last.0/last.0.0/Conv"  # the 1×1 conv feeding the classifier (128 channels)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--target-flops", type=float, default=0.3)
    args = parser.parse_args()
    x, y = fresh()
    table = Table("compact.txt",
                  f"# {MODEL} pruned to {args.target_flops:.0%} FLOPs with 376 renders (labels), {args.seeds} seeds: "
                  "accuracy on 1,880 fresh renders pooled (± 95 %), (lowest-highest seed), the 128-channel layer "
                  "before the classifier kept (by seed)\n",
                  f"{'variant':<28}{'accuracy':>11}  {'seeds':<9}{'last layer':>12}")
    table.add(f"{'original':<28}{accuracy_interval(predictions(SAMPLES / MODEL, x) == y):>11}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = prune_folder(Path(tmp))
        for name, options in ROWS.items():
            hits, last = [], []
            for seed in range(args.seeds):
                result = prune(SAMPLES / MODEL, folder, args.target_flops, labels="imagefolder", seed=seed,
                               bench=False, max_drop=100, **options)
                hits.append(predictions(result.model, x) == y)
                last.append(result.report.as_dict()["widths"]["after"].get(LAST))
            spread = seed_range(hits)
            table.add(f"{name:<28}{accuracy_interval(np.concatenate(hits)):>11}  {spread:<9}"
                      f"{'/'.join(str(w) for w in last):>12}")
    table.save()


if __name__ == "__main__":
    sys.exit(main())
