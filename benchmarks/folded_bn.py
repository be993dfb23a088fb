"""Why a BN-folded model collapsed while fine-tuning, and what each fix is worth.

The MobileNet sample exported by torch's dynamo exporter (BatchNorm folded into the convs),
pruned to 30 % of its FLOPs with labels, four ways, beside its BN-keeping twin:

- as the code was: the training share sorted by index (an image folder is read class by class,
  so the calibration batches held the first classes only) and no BatchNorm added;
- the training share shuffled, no BatchNorm added;
- shuffled and an identity BatchNorm added after each conv for fine-tuning (the default now).

The old behaviours are put back by replacing ``split`` and ``needs_batchnorm`` in the pruning
module for the run; everything else is the default path (``round_to=1`` and no timing, to keep
it short; the same seed everywhere).

    python benchmarks/folded_bn.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"

import onnxprune.pipeline as PRUNING  # noqa: E402  (the module, for the patches below)
from onnxprune.data.sources import Dataset, split  # noqa: E402



def _sorted_split(data: Dataset, val_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """The split as it was: both shares in file order."""
    train, val = split(data, val_fraction, seed)
    order = np.argsort([data.names.index(n) for n in train.names])
    return train.subset(order), val


def _run(model: str, sorted_split: bool, add_batchnorm: bool) -> dict:
    original_split, original_needs = PRUNING.split, PRUNING.needs_batchnorm
    try:
        if sorted_split:
            PRUNING.split = _sorted_split
        if not add_batchnorm:
            PRUNING.needs_batchnorm = lambda *args, **kwargs: []
        return PRUNING.prune(SAMPLES / model, SAMPLES / "digits", 0.3, labels="imagefolder", round_to=1,
                             bench=False, max_drop=100).report.as_dict()
    finally:
        PRUNING.split, PRUNING.needs_batchnorm = original_split, original_needs


def main() -> None:
    rows = [
        ("digits_mobilenet.dynamo.onnx", "training share sorted, no BN added (before)", True, False),
        ("digits_mobilenet.dynamo.onnx", "shuffled, no BN added", False, False),
        ("digits_mobilenet.dynamo.onnx", "shuffled, BN added and folded back (now)", False, True),
        ("digits_mobilenet.onnx", "BN-keeping twin, shuffled (now)", False, True),
    ]
    print("# BN-folded MobileNet sample at 30 % FLOPs with labels (135 held-out images, seed 0)\n")
    print(f"{'model':<30}{'variant':<46}{'acc before':>11}{'acc after':>10}{'BN added':>9}  loss per round")
    for model, label, sorted_split, add_bn in rows:
        report = _run(model, sorted_split, add_bn)
        q = report["quality"]
        losses = " ".join(f"{t['loss']:.2f}" for t in report["trajectory"][1:] if t["loss"] is not None)
        print(f"{model:<30}{label:<46}{q['before']['accuracy']:>11.3f}{q['after']['accuracy']:>10.3f}"
              f"{report['batchnorm_inserted']:>9}  {losses}", flush=True)


if __name__ == "__main__":
    main()
