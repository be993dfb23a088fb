"""Each method onnxprune offers beyond the default, against the default, on the printed-character
samples (``benchmarks/chars_task.py``): the same seed, data, target and fine-tuning steps; only
the method differs. Accuracy on 1,880 fresh renders with its 95 % interval, and the gap to the
row it is compared with (paired bootstrap over the same images).

- default: taylor, iterative rounds, plain final fine-tuning, every image labelled
- --recover dsd: the final fine-tuning dense → sparse (30 %) → dense, the same steps
- --schedule cucb: each round's channels chosen by the bandit while fine-tuning, the same steps
- --criterion kcp: kernel clusters instead of taylor
- 5 % labels: one training image in twenty labelled, the rest distilled only (compared with default)
- 5 % labels, --teacher ensemble: the same labels, temporal-ensembling targets (compared with the row above)

    python benchmarks/methods.py [--target-flops 0.3] [--rows default,dsd,cucb,kcp,labels5,ensemble5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from chars_task import MODELS, SAMPLES, accuracy_interval, fresh, paired_interval, predictions, prune_folder  # noqa: E402
from table import Table  # noqa: E402

from onnxprune import prune  # noqa: E402

LABELLED_SHARE = 0.05
ROWS = {  # name: (options, the row it is compared with)
    "default": ({}, None),
    "dsd": ({"recover": "dsd"}, "default"),
    "cucb": ({"schedule": "cucb"}, "default"),
    "kcp": ({"criterion": "kcp"}, "default"),
    "labels5": ({"labels": "PARTIAL"}, "default"),
    "ensemble5": ({"labels": "PARTIAL", "teacher": "ensemble"}, "labels5"),
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
    parser.add_argument("--rows", default=",".join(ROWS))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    models = args.models.split(",")
    x, y = fresh()
    table = Table("methods.txt",
                  f"# accuracy on {len(y)} fresh renders after pruning to {args.target_flops:.0%} FLOPs (± 95 % interval);",
                  "# gap: points against the row named, paired bootstrap 95 % interval\n",
                  f"{'method':<11}" + "".join(f"{m.split('.')[0].removeprefix('chars_'):>12}{'':31}" for m in models)
                  + f"{'time s':>8}")
    hits: dict[str, dict[str, np.ndarray]] = {}
    row = f"{'original':<11}"
    for m in models:
        row += f"{accuracy_interval(predictions(SAMPLES / m, x) == y):>12}{'':31}"
    table.add(row)
    with tempfile.TemporaryDirectory() as tmp:
        folder = prune_folder(Path(tmp))
        csv = partial_labels(folder, LABELLED_SHARE, args.seed)
        for name in args.rows.split(","):
            options, against = ROWS[name]
            options = {"labels": "imagefolder", **options}
            if options["labels"] == "PARTIAL":
                options["labels"] = str(csv)
            started, row = time.perf_counter(), f"{name:<11}"
            for m in models:
                pruned = prune(SAMPLES / m, folder, args.target_flops, seed=args.seed, bench=False, max_drop=100,
                               **options).model
                h = predictions(pruned, x) == y
                hits.setdefault(name, {})[m] = h
                gap = ""
                if against in hits and m in hits[against]:
                    gap = "{:+.1f} [{:+.1f},{:+.1f}] vs " .format(*paired_interval(h, hits[against][m])) + against
                row += f"{accuracy_interval(h):>12} {gap:<30}"
            table.add(row + f"{time.perf_counter() - started:>8.0f}")
    table.save()


if __name__ == "__main__":
    sys.exit(main())
