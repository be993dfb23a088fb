"""Molchanov et al.'s oracle study on the sample models, and accuracy after pruning per criterion.

For every channel of the prunable groups of each sample model, the oracle is the change in
cross-entropy (true labels) on the calibration images when that channel alone is removed
(sliced out of the ONNX graph, run in onnxruntime). Each criterion's scores are compared with it
by Spearman rank correlation within each group (per-group normalization does not change ranks),
averaged over groups. Then every sample model is pruned to --target-flops with each criterion and
the same fine-tuning budget, and held-out accuracy is reported.

    python benchmarks/criteria.py [--target-flops 0.3] [--skip-pruning]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"

from onnxprune.criteria import CRITERIA, get  # noqa: E402
from onnxprune.data import load_data, split  # noqa: E402
from onnxprune.finetune import Targets  # noqa: E402
from onnxprune.groups import analyze_groups  # noqa: E402
from onnxprune.load import load  # noqa: E402
from onnxprune import prune  # noqa: E402
from onnxprune.session import TorchView  # noqa: E402
from onnxprune.slice import slice_model  # noqa: E402
from onnxprune.verify import run_batched  # noqa: E402

MODELS = ["digits_vgg.onnx", "digits_resnet.onnx", "digits_mobilenet.onnx"]


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.std(ra) == 0 or np.std(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def oracle_study(name: str, calib_size: int, seed: int) -> dict[str, float]:
    loaded = load(SAMPLES / name)
    data = load_data(SAMPLES / "digits", loaded.image, labels="imagefolder")
    train, _ = split(data, 0.15, seed)
    x, y = train.inputs[:calib_size], train.labels[:calib_size]
    analysis = analyze_groups(loaded)
    base = cross_entropy(run_batched(loaded.model, loaded.image.name, x)[0], y)
    oracle: dict[int, np.ndarray] = {}
    for g in analysis.prunable:
        if g.channels < 4:
            continue
        deltas = []
        for c in range(g.channels):
            keep = {g.id: np.delete(np.arange(g.channels), c)}
            sliced = slice_model(loaded.model, analysis, keep)
            deltas.append(cross_entropy(run_batched(sliced, loaded.image.name, x)[0], y) - base)
        oracle[g.id] = np.abs(np.asarray(deltas))
    view = TorchView.of(loaded.model, loaded.image)
    teacher = run_batched(loaded.model, loaded.image.name, x)
    targets = Targets(teacher, y)
    result = {}
    for crit in sorted(CRITERIA):
        scores = view.scores(analysis, get(crit), x, 32, targets, seed)
        rhos = [spearman(scores[gid], oracle[gid]) for gid in oracle]
        result[crit] = float(np.nanmean(rhos))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-flops", type=float, default=0.3)
    parser.add_argument("--calibration", type=int, default=128, help="images for oracle and scores")
    parser.add_argument("--skip-pruning", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    crits = sorted(CRITERIA)
    print("# Oracle study: Spearman ρ between criterion and |Δ loss| when one channel is removed")
    print(f"# ({args.calibration} calibration images, true labels; mean over groups with ≥ 4 channels)\n")
    header = f"{'criterion':<16}" + "".join(f"{m.split('.')[0][7:]:>12}" for m in MODELS) + f"{'mean':>10}"
    print(header)
    table = {m: oracle_study(m, args.calibration, args.seed) for m in MODELS}
    for crit in crits:
        values = [table[m][crit] for m in MODELS]
        print(f"{crit:<16}" + "".join(f"{v:>12.3f}" for v in values) + f"{np.mean(values):>10.3f}")
    if args.skip_pruning:
        return
    print(f"\n# Held-out accuracy after pruning to {args.target_flops:.0%} FLOPs (labels, default budget)\n")
    print(f"{'criterion':<16}" + "".join(f"{m.split('.')[0][7:]:>12}" for m in MODELS) + f"{'mean':>10}{'time s':>9}")
    for crit in crits:
        accs, started = [], time.perf_counter()
        for m in MODELS:
            report = prune(SAMPLES / m, SAMPLES / "digits", args.target_flops, labels="imagefolder",
                           criterion=crit, seed=args.seed, bench=False).report.as_dict()
            accs.append(report["quality"]["after"]["accuracy"])
        print(f"{crit:<16}" + "".join(f"{a:>12.3f}" for a in accs) + f"{np.mean(accs):>10.3f}"
              f"{time.perf_counter() - started:>9.0f}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
