"""Accuracy after pruning: every sample model at 0.5 and 0.3 of its FLOPs, with and without
labels, by onnxprune and — on the same torch model, data and fine-tuning budget — by
Torch-Pruning's Taylor pruner (a benchmark-only dependency: pip install -e ".[bench]").

Torch-Pruning runs on the torch module onnxprune imports from the same ONNX file, prunes
globally with TaylorImportance in the same number of rounds until its own MAC count reaches the
MAC share onnxprune reached, and gets the same fine-tuning (steps, loss, optimizer, lr).

    python benchmarks/accuracy.py [--models digits_vgg ...] [--targets 0.5 0.3] [--labels yes|no|both]

The ``.default`` models are the same networks exported with torch's defaults (batch fixed at 1,
BatchNorm folded): each row beside its twin shows what that form costs.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from math import ceil
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"
sys.path.insert(0, str(ROOT / "benchmarks"))

from peer import taylor_prune_to  # noqa: E402

from onnxprune import PruneOptions, prune  # noqa: E402
from onnxprune.data.augment import resolve_mode  # noqa: E402
from onnxprune.data.sources import load_data, split  # noqa: E402
from onnxprune.graph.load import load  # noqa: E402
from onnxprune.graph.runtime import run_batched  # noqa: E402
from onnxprune.torchview.finetune import Targets, TrainSettings, finetune  # noqa: E402
from onnxprune.torchview.importer import import_model  # noqa: E402
from onnxprune.torchview.loader import default_workers  # noqa: E402
from onnxprune.torchview.view import _scoring_loss  # noqa: E402


def _torch_pruning(name: str, mac_fraction: float, labels: bool, seed: int) -> dict:
    import torch_pruning as tp

    o = PruneOptions()
    loaded = load(SAMPLES / name)
    data = load_data(SAMPLES / "digits", loaded.image, labels="imagefolder")
    train, val = split(data, o.val_split, seed)
    teacher_val = run_batched(loaded.model, loaded.image.name, val.inputs)
    torch.manual_seed(seed)
    module = copy.deepcopy(import_model(loaded).module).eval()
    example = torch.from_numpy(train.batch([0]))
    run = lambda m, x: [m(x)]  # noqa: E731
    base_macs, _ = tp.utils.count_ops_and_params(module, example)
    rounds = ceil((1 - mac_fraction) / 0.1 - 1e-9)
    teacher_module = copy.deepcopy(module).requires_grad_(False)
    teacher = lambda x, _positions=None: run(teacher_module, x)  # noqa: E731
    trained = train if labels else replace(train, labels=None)
    # onnxprune's own recipe: its default views (auto: shift for a classifier), its workers
    settings = TrainSettings(lr=o.lr, batch_size=o.batch_size, augment=resolve_mode(o.augment, (1, 10)),
                             workers=default_workers())
    calib_inputs = train.subset(np.arange(o.calibration_images)).inputs
    teacher_calib = run_batched(loaded.model, loaded.image.name, calib_inputs)
    per_round = min(20, ceil(len(train) / o.batch_size))
    calib = torch.from_numpy(calib_inputs)
    # the very loss onnxprune scores with: true labels, or labels sampled from the teacher
    scoring = _scoring_loss(Targets(teacher_calib,
                                    train.labels[: len(calib)] if labels else None), len(calib), seed)

    def loss(m: torch.nn.Module) -> torch.Tensor:
        return scoring(run(m, calib), 0)

    for r in range(1, rounds + 1):
        goal = base_macs * (1 - (1 - mac_fraction) * r / rounds)
        module = taylor_prune_to(module, example, loss, goal)
        finetune(module, trained, teacher, per_round, settings, run, (seed, r))
    finetune(module, trained, teacher, ceil(o.epochs * ceil(len(train) / o.batch_size)), settings, run, (seed, 0))
    macs, _ = tp.utils.count_ops_and_params(module, example)
    with torch.no_grad():
        out = module.eval()(torch.from_numpy(val.inputs)).numpy()
    result = {"mac_fraction": macs / base_macs, "agreement": float((out.argmax(1) == teacher_val[0].argmax(1)).mean())}
    result["accuracy"] = float((out.argmax(1) == val.labels).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["digits_vgg", "digits_vgg.default", "digits_resnet",
                                                         "digits_resnet.default", "digits_mobilenet",
                                                         "digits_mobilenet.default"])
    parser.add_argument("--labels", choices=["yes", "no", "both"], default="both")
    parser.add_argument("--targets", nargs="+", type=float, default=[0.5, 0.3])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-torch-pruning", action="store_true")
    parser.add_argument("--flops-weight", type=float, default=None, help="onnxprune's λ (default: its own)")
    args = parser.parse_args()
    print("# Held-out accuracy before → after pruning (sample models, default settings, "
          f"{len(split(load_data(SAMPLES / 'digits', load(SAMPLES / 'digits_vgg.onnx').image), PruneOptions().val_split, args.seed)[1])}"
          " validation images)\n")
    print(f"{'model':<26}{'target':>7}{'labels':>8} | {'FLOPs':>7}{'MACs':>7}{'acc before':>11}{'acc after':>10}"
          f"{'Δ pts':>7}{'agree':>7}{'≤drop':>7}{'time s':>8} | {'TP MACs':>8}{'TP acc':>8}{'TP agree':>9}{'TP s':>6}")
    for name in args.models:
        for target in args.targets:
            for labels in {"yes": (True,), "no": (False,), "both": (True, False)}[args.labels]:
                started = time.perf_counter()
                # the budget off, so every row shows its numbers; the last column says whether the
                # default --max-drop would have let the model through
                result = prune(SAMPLES / f"{name}.onnx", SAMPLES / "digits", target, max_drop=100,
                               labels="imagefolder" if labels else None, seed=args.seed,
                               **({} if args.flops_weight is None else {"flops_weight": args.flops_weight}))
                ours_s = time.perf_counter() - started
                report = result.report.as_dict()
                loaded = load(SAMPLES / f"{name}.onnx")
                data = load_data(SAMPLES / "digits", loaded.image, labels="imagefolder")
                _, val = split(data, PruneOptions().val_split, args.seed)
                q = report["quality"]
                mac_fraction = report["macs"]["after"] / report["macs"]["before"]
                # true-label accuracy on the same held-out split, label-free runs included
                acc_before = _accuracy(loaded.model, loaded.image.name, val)
                acc_after = _accuracy(result.model, loaded.image.name, val, loaded.fixed_batch or 64)
                row = (f"{name:<26}{target:>7.1f}{('yes' if labels else 'no'):>8} | {report['flops']['fraction']:>7.3f}"
                       f"{mac_fraction:>7.3f}{acc_before:>11.3f}{acc_after:>10.3f}{100 * (acc_after - acc_before):>+7.1f}"
                       f"{q['after']['top1_agreement']:>7.3f}"
                       f"{'yes' if q['drop']['points'] <= PruneOptions().max_drop else 'NO':>7}"
                       f"{ours_s:>8.0f} |")
                if args.no_torch_pruning:
                    print(row, flush=True)
                    continue
                started = time.perf_counter()
                try:
                    tp_result = _torch_pruning(f"{name}.onnx", mac_fraction, labels, args.seed)
                    row += (f"{tp_result['mac_fraction']:>8.3f}{tp_result['accuracy']:>8.3f}"
                            f"{tp_result['agreement']:>9.3f}{time.perf_counter() - started:>6.0f}")
                except Exception as err:  # the peer failing on a model is a result too
                    row += f"  failed: {type(err).__name__}: {str(err).splitlines()[0][:60]}"
                print(row, flush=True)


def _accuracy(model, input_name: str, val, batch: int = 64) -> float:
    out = run_batched(model, input_name, val.inputs, batch)[0]
    return float((out.argmax(1) == val.labels).mean())


if __name__ == "__main__":
    main()
