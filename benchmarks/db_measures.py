"""The DB text detector of the development set, judged two ways on the same fresh pages: by the
measure the run judges with (``onnxprune.measure.tasks``: IoU of the probability maps binarized
at --mask-threshold 0.3) and by the text regions its users decode (``wild.py``: F1 of connected
regions matched at IoU 0.5). A run that reported no loss and lost regions on fresh pages tells
this way whether the measure or the number of held-out pages was short.

    python benchmarks/db_measures.py [--work /tmp/onnxprune-wild]

Reads the original and the written model that ``wild.py --only ocr-det-db`` left in --work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from wild import MODELS, drop_interval, inputs, judge, run_model  # noqa: E402

from onnxprune.measure.tasks import TaskSettings, measure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/onnxprune-wild"))
    args = parser.parse_args()
    model = next(m for m in MODELS if m.name == "ocr-det-db")
    original = args.work / "models" / "ocr-det-db.onnx"
    written = args.work / "runs" / "ocr-det-db.pruned.onnx"
    fresh = args.work / "fresh" / f"{model.images}-{model.size[0]}x{model.size[1]}"
    x = inputs(fresh, model, False)
    a, b = run_model(original, x), run_model(written, x)
    maps = measure("segment", b, a, None, TaskSettings())
    regions = judge(model.judge, a, b, model.size, len(x))
    regions.items = len(x)
    print(f"# ocr-det-db on {len(x)} fresh pages: points lost, 100 × (1 − figure) [95 % interval]")
    points, low, high = drop_interval(regions)
    print(f"{regions.measure:<44}{points:+6.1f} [{low:+.1f}, {high:+.1f}]  ({regions.reference_items} regions)")
    print(f"{'IoU of the maps binarized at 0.3 (the run)':<44}{100 * (1 - maps.figure()):+6.1f}"
          f"  (pixel agreement {100 * maps.extras['pixel_agreement']:.1f} %)")


if __name__ == "__main__":
    main()
