"""Molchanov et al.'s criteria study on the printed-character samples (``benchmarks/chars_task.py``).

1. Oracle: for every channel of each prunable group (≥ 4 channels), the change in cross-entropy
   (true labels, 128 calibration images) when that channel alone is sliced out of the ONNX graph.
   Each criterion's scores against it: Spearman's ρ within each group, averaged over groups.
2. Pruning curves with no fine-tuning: each criterion scores the original once, the selector cuts
   it to 90 %, 80 %, … 30 % of its FLOPs, and accuracy is measured on fresh renders; one plot per
   model (``benchmarks/results/criteria-<model>.png``).
3. Accuracy on fresh renders after the default schedule to --target-flops (labels), per criterion,
   pooled over --seeds runs, with the 95 % interval 1,880 images allow, the lowest and highest
   seed's, and each criterion's gap to taylor (paired bootstrap).

``--taxonomy`` replaces 3 with a search over the components a data criterion is built from
(signal × per-batch reduction × per-group normalization × weighting by the filter's norm),
each scored by 1 and by 2 at 50 % of the FLOPs.

    python benchmarks/criteria.py [--target-flops 0.3] [--criteria taylor,random,l1,kcp,fisher] [--taxonomy]
"""

from __future__ import annotations

import argparse
import itertools
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
from onnxprune.criteria import CRITERIA, Criterion, Observation  # noqa: E402
from onnxprune.criteria import parts  # noqa: E402
from onnxprune.criteria.stats import score_groups  # noqa: E402
from onnxprune.data.sources import load_data, split  # noqa: E402
from onnxprune.graph.groups import analyze_groups  # noqa: E402
from onnxprune.graph.load import load  # noqa: E402
from onnxprune.graph.runtime import run_batched  # noqa: E402
from onnxprune.graph.slice import slice_model  # noqa: E402
from onnxprune.stages.select import floor_for, select  # noqa: E402
from onnxprune.torchview.finetune import Targets  # noqa: E402
from onnxprune.torchview.view import TorchView  # noqa: E402

CURVE = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    return float(-logp[np.arange(len(labels)), labels].mean())


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    if np.std(ra) == 0 or np.std(rb) == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


class Study:
    """One model: its groups, calibration images, oracle and fresh images, scored once each."""

    def __init__(self, name: str, folder: Path, calib_size: int, seed: int, fresh_set) -> None:
        self.name = name
        self.loaded = load(SAMPLES / name)
        data = load_data(folder, self.loaded.image, labels="imagefolder")
        train, _ = split(data, 0.15, seed)
        self.x, self.y = train.inputs[:calib_size], train.labels[:calib_size]
        self.analysis = analyze_groups(self.loaded)
        self.view = TorchView.of(self.loaded.model, self.loaded.image)
        self.targets = Targets(run_batched(self.loaded.model, self.loaded.image.name, self.x), self.y)
        self.fresh_x, self.fresh_y = fresh_set
        self.seed = seed
        self.oracle = self._oracle()

    def _oracle(self) -> dict[int, np.ndarray]:
        base = cross_entropy(run_batched(self.loaded.model, self.loaded.image.name, self.x)[0], self.y)
        oracle = {}
        for g in self.analysis.prunable:
            if g.channels < 4:
                continue
            deltas = []
            for c in range(g.channels):
                keep = {g.id: np.delete(np.arange(g.channels), c)}
                sliced = slice_model(self.loaded.model, self.analysis, keep, annotate=False)
                deltas.append(cross_entropy(run_batched(sliced, self.loaded.image.name, self.x)[0], self.y) - base)
            oracle[g.id] = np.abs(np.asarray(deltas))
        return oracle

    def scores(self, criterion: Criterion) -> dict[int, np.ndarray]:
        return self.view.scores(self.analysis, criterion, self.x, 32, self.targets, self.seed)

    def rho(self, scores: dict[int, np.ndarray]) -> float:
        return float(np.nanmean([spearman(scores[gid], self.oracle[gid]) for gid in self.oracle]))

    def curve(self, scores: dict[int, np.ndarray], fractions=CURVE) -> list[float]:
        """Accuracy on the fresh renders with no fine-tuning, cut once to each FLOPs fraction."""
        floors = {g.id: floor_for(g.channels, 1, 1) for g in self.analysis.prunable}
        out = []
        for fraction in fractions:
            chosen = select(self.loaded.model, self.analysis, scores, int(fraction * self.analysis.cost.flops), floors)
            sliced = slice_model(self.loaded.model, self.analysis, chosen.keep, annotate=False)
            logits = run_batched(sliced, self.loaded.image.name, self.fresh_x)[0]
            out.append(float((logits.argmax(1) == self.fresh_y).mean()))
        return out


def short(model: str) -> str:
    return model.split(".")[0].removeprefix("chars_")


def oracle_and_curves(studies: list[Study], criteria: dict[str, Criterion], table: Table) -> dict:
    table.add("# 1. Oracle: Spearman ρ between criterion and |Δ loss| when one channel is removed")
    table.add("# (128 calibration images, true labels; mean over groups with ≥ 4 channels)\n")
    table.add(f"{'criterion':<22}" + "".join(f"{short(s.name):>11}" for s in studies) + f"{'mean':>9}")
    curves: dict[str, dict[str, list[float]]] = {}
    for name, criterion in criteria.items():
        rhos = []
        for s in studies:
            scores = s.scores(criterion)
            rhos.append(s.rho(scores))
            curves.setdefault(s.name, {})[name] = s.curve(scores)
        table.add(f"{name:<22}" + "".join(f"{r:>11.3f}" for r in rhos) + f"{np.mean(rhos):>9.3f}")
    table.add("\n# 2. Accuracy on fresh renders with no fine-tuning, cut once to each share of the FLOPs")
    for s in studies:
        table.add(f"\n{short(s.name):<22}" + "".join(f"{f:>7.0%}" for f in CURVE))
        for name in criteria:
            table.add(f"{name:<22}" + "".join(f"{a:>7.1%}" for a in curves[s.name][name]))
    return curves


def plot(curves: dict[str, dict[str, list[float]]], original: dict[str, float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for model, by_criterion in curves.items():
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for name, accs in by_criterion.items():
            ax.plot([100 * (1 - f) for f in CURVE], [100 * a for a in accs], marker="o", ms=3, label=name,
                    lw=2 if name in ("taylor", "random") else 1)
        ax.axhline(100 * original[model], color="grey", lw=0.8, ls="--")
        ax.set_xlabel("FLOPs removed (%)")
        ax.set_ylabel("accuracy, fresh renders (%)")
        ax.set_title(f"{short(model)}: pruned once, no fine-tuning")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(Path(__file__).resolve().parent / "results" / f"criteria-{short(model)}.png", dpi=110)
        plt.close(fig)


def after_schedule(folder: Path, names: list[str], target: float, seeds: int, fresh_set, table: Table) -> None:
    x, y = fresh_set
    table.add(f"\n# 3. Accuracy on {len(y)} fresh renders after the default schedule to {target:.0%} FLOPs (labels), "
              f"pooled over seeds 0-{seeds - 1}: ± the 95 % interval, (lowest-highest seed),")
    table.add("# and the gap to taylor (paired bootstrap over the same images and seeds)\n")
    table.add(f"{'criterion':<14}" + "".join(f"{short(m):>12}{'':22}" for m in MODELS) + f"{'time s':>8}")
    hits: dict[str, dict[str, np.ndarray]] = {}
    row = f"{'original':<14}"
    for m in MODELS:
        row += f"{accuracy_interval(predictions(SAMPLES / m, x) == y):>12}{'':22}"
    table.add(row)
    for crit in names:
        started, row = time.perf_counter(), f"{crit:<14}"
        for m in MODELS:
            per_seed = [predictions(prune(SAMPLES / m, folder, target, labels="imagefolder", criterion=crit,
                                          seed=seed, bench=False, max_drop=100).model, x) == y
                        for seed in range(seeds)]
            h = np.concatenate(per_seed)
            hits.setdefault(crit, {})[m] = h
            gap = "" if crit == "taylor" or "taylor" not in hits else \
                "{:+.1f} [{:+.1f},{:+.1f}]".format(*paired_interval(h, hits["taylor"][m]))
            spread = seed_range(per_seed)
            row += f"{accuracy_interval(h):>12} {spread:<8}{gap:<14}"
        table.add(row + f"{time.perf_counter() - started:>8.0f}")


def taxonomy(studies: list[Study], table: Table) -> None:
    signals = {"activation": parts.activation, "gradient": parts.gradient, "taylor": parts.taylor_product}
    reductions = {"abs-mean": parts.abs_of_mean, "mean-abs": parts.mean_of_abs,
                  "sq-per-sample": parts.mean_of_squares_per_sample, "fisher-sum": parts.half_mean_of_squared_sums}
    norms = {"l2": parts.l2_normalized, "mean": lambda v: v / max(float(np.mean(v)), 1e-30), "none": lambda v: v}
    table.add("\n# Taxonomy: signal × reduction × normalization × filter-norm weighting; ρ is the oracle's")
    table.add("# (as 1), acc50 the fresh accuracy with no fine-tuning at 50 % of the FLOPs (as 2)\n")
    table.add(f"{'combination':<44}{'ρ mean':>8}{'acc50 mean':>12}")
    rows = []
    for (sn, signal), (rn, reduce) in itertools.product(signals.items(), reductions.items()):
        observation = Observation(signal, reduce, gradient=sn != "activation")
        observed = {}
        for s in studies:  # one observation pass per (signal, reduction) and model
            per_batch = s.view.observe(s.analysis, observation, s.x, 32, s.targets, s.seed)
            observed[s.name] = {t: sum(v) / max(len(v), 1) for t, v in per_batch.items()}
        for (nn_, norm), weighted in itertools.product(norms.items(), (False, True)):
            def score(group, stats, norm=norm, weighted=weighted):
                value = stats.observed_sum(group)
                if weighted:
                    value = value * stats.producer_norms(group, 2)
                return norm(value)
            name = f"{sn}/{rn}/{nn_}{'/×‖w‖' if weighted else ''}"
            criterion = Criterion(name, score, observation)
            rhos, accs = [], []
            for s in studies:
                scores = score_groups(criterion, s.view.model, s.analysis, observed[s.name], s.seed)
                rhos.append(s.rho(scores))
                accs.append(s.curve(scores, (0.5,))[0])
            rows.append((name, float(np.mean(rhos)), float(np.mean(accs))))
            table.add(f"{name:<44}{rows[-1][1]:>8.3f}{rows[-1][2]:>12.1%}")
    reference = next(r for r in rows if r[0] == "taylor/abs-mean/l2")
    better = [r for r in rows if r[1] > reference[1] and r[2] > reference[2]]
    table.add(f"\n# taylor is taylor/abs-mean/l2 (ρ {reference[1]:.3f}, acc50 {reference[2]:.1%}); beating it on both: "
              + (", ".join(f"{n} (ρ {a:.3f}, {b:.1%})" for n, a, b in sorted(better, key=lambda r: -r[2])) or "none"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-flops", type=float, default=0.3)
    parser.add_argument("--calibration", type=int, default=128, help="images for oracle and scores")
    parser.add_argument("--criteria", default="taylor,random,l1,kcp,fisher,taylor-abs-w", help="pruned with the default schedule")
    parser.add_argument("--skip-pruning", action="store_true")
    parser.add_argument("--taxonomy", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="for the oracle, the scores and the curves")
    parser.add_argument("--seeds", type=int, default=3, help="runs per cell of the default-schedule table")
    args = parser.parse_args()
    fresh_set = fresh()
    with tempfile.TemporaryDirectory() as tmp:
        folder = prune_folder(Path(tmp))
        studies = [Study(m, folder, args.calibration, args.seed, fresh_set) for m in MODELS]
        if args.taxonomy:
            table = Table("criteria-taxonomy.txt")
            taxonomy(studies, table)
            table.save()
            return
        table = Table("criteria.txt")
        curves = oracle_and_curves(studies, dict(sorted(CRITERIA.items())), table)
        original = {s.name: float((run_batched(s.loaded.model, s.loaded.image.name, s.fresh_x)[0].argmax(1)
                                   == s.fresh_y).mean()) for s in studies}
        plot(curves, original)
        if not args.skip_pruning:
            names = args.criteria.split(",")
            after_schedule(folder, ["taylor", *[n for n in names if n != "taylor"]], args.target_flops, args.seeds,
                           fresh_set, table)
        table.save()


if __name__ == "__main__":
    sys.exit(main())
