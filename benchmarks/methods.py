"""Each method onnxprune offers beyond the default, against the default, on the printed-character
samples (``benchmarks/chars_task.py``): the same seeds, data, target and fine-tuning steps; only
the method differs. Every cell is --seeds runs (seeds 0, 1, …: the split, scoring and
fine-tuning differ): accuracy on 1,880 fresh renders pooled over the seeds with its 95 % interval,
the lowest and highest seed's in brackets, and the gap to the row it is compared with (a paired
bootstrap over the same images and seeds).

- default: taylor, iterative rounds, plain final fine-tuning, every image labelled, --structure auto
  (blocks and channels under a target)
- --recover dsd: the final fine-tuning dense → sparse (30 %) → dense, the same steps
- --schedule cucb: each round's channels chosen by the bandit while fine-tuning, the same steps
- --criterion kcp: kernel clusters instead of taylor
- 5 % labels: one training image in twenty labelled, the rest distilled only (compared with default)
- old: no least-squares refit after each cut and a fixed final fine-tuning of 10 epochs (the
  defaults before the recovery issue); no-refit and 10-epochs: each of the two alone
- --structure width: channels only (the default before the depth issue); --structure both: whole
  residual blocks first (those that move the outputs least per FLOP, up to half the FLOPs to
  remove), then channels (what auto runs under a target); --structure depth: blocks as far as the
  target allows
- --augment mix: the label-free views (jittered, mixed two by two) with the labels mixed by the same
  weights, against the default's shifts
- --round-steps 40: four times the fine-tuning after each round (the default: one pass over the
  training images, 10 to 20 steps); --round-steps 0: none, the least-squares refit alone between
  rounds

(``--teacher ensemble``, temporal-ensembling targets with the same 5 % of the labels, was measured
here too, at commit bc4814d, and removed: it helped on none of the three; see docs/methods.md.)

    python benchmarks/methods.py [--target-flops 0.3] [--rows default,dsd,cucb,kcp,labels5] [--save methods.txt]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chars_task import (  # noqa: E402
    MODELS, SAMPLES, accuracy_interval, fresh, paired_interval, predictions, prune_folder, seed_range,
)
from table import Table  # noqa: E402

from onnxprune import prune  # noqa: E402

LABELLED_SHARE = 0.05
ROWS = {  # name: (options, the row it is compared with)
    "default": ({}, None),
    "dsd": ({"recover": "dsd"}, "default"),
    "cucb": ({"schedule": "cucb"}, "default"),
    "kcp": ({"criterion": "kcp"}, "default"),
    "labels5": ({"labels": "PARTIAL"}, "default"),
    "old": ({"reconstruct": False, "epochs": 10}, "default"),
    "no-refit": ({"reconstruct": False}, "default"),
    "10-epochs": ({"epochs": 10}, "default"),
    "width": ({"structure": "width"}, "default"),
    "both": ({"structure": "both"}, "default"),
    "depth": ({"structure": "depth"}, "default"),
    "mix": ({"augment": "mix"}, "default"),
    "round-steps-40": ({"round_steps": 40}, "default"),
    "round-steps-0": ({"round_steps": 0}, "default"),
}


def partial_labels(folder: Path, share: float, seed: int) -> Path:
    """A CSV labelling ``share`` of the images (a seeded choice); the class is the folder's index."""
    files = sorted(p.relative_to(folder) for p in folder.rglob("*.png"))
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(files), size=max(1, round(share * len(files))), replace=False))
    path = folder.parent / "labels.csv"
    path.write_text("file,label\n" + "".join(f"{files[i]},{int(files[i].parts[0].split('_')[0])}\n" for i in chosen))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-flops", type=float, default=0.3)
    parser.add_argument("--rows", default="default,dsd,cucb,kcp,labels5")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--save", default="methods.txt", help="results file name under benchmarks/results")
    args = parser.parse_args()
    models = args.models.split(",")
    x, y = fresh()
    table = Table(args.save,
                  f"# accuracy on {len(y)} fresh renders after pruning to {args.target_flops:.0%} FLOPs, pooled over "
                  f"{args.seeds} seeds (± 95 % interval; (lowest-highest seed));",
                  "# gap: points against the row named, paired bootstrap 95 % interval\n",
                  f"{'method':<11}" + "".join(f"{m.split('.')[0].removeprefix('chars_'):>12}{'':39}" for m in models)
                  + f"{'time s':>8}")
    hits: dict[str, dict[str, np.ndarray]] = {}
    row = f"{'original':<11}"
    for m in models:
        row += f"{accuracy_interval(predictions(SAMPLES / m, x) == y):>12}{'':39}"
    table.add(row)
    with tempfile.TemporaryDirectory() as tmp:
        folder = prune_folder(Path(tmp))
        csv = partial_labels(folder, LABELLED_SHARE, 0)
        for name in args.rows.split(","):
            options, against = ROWS[name]
            options = {"labels": "imagefolder", **options}
            if options["labels"] == "PARTIAL":
                options["labels"] = str(csv)
            started, row = time.perf_counter(), f"{name:<11}"
            for m in models:
                per_seed = []
                for seed in range(args.seeds):
                    pruned = prune(SAMPLES / m, folder, args.target_flops, seed=seed, bench=False, max_drop=100,
                                   **options).model
                    per_seed.append(predictions(pruned, x) == y)
                h = np.concatenate(per_seed)
                hits.setdefault(name, {})[m] = h
                gap = ""
                if against in hits and m in hits[against]:
                    gap = "{:+.1f} [{:+.1f},{:+.1f}] vs ".format(*paired_interval(h, hits[against][m])) + against
                spread = seed_range(per_seed)
                row += f"{accuracy_interval(h):>12} {spread:<8}{gap:<30}"
            table.add(row + f"{time.perf_counter() - started:>8.0f}")
    table.save()


if __name__ == "__main__":
    sys.exit(main())
