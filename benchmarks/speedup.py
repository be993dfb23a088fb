"""Latency that follows FLOPs: torchvision CNNs pruned to 30 % of their FLOPs, timed side by side.

For each model (torchvision, weights=None, 224×224, random inputs as data): the original,
onnxprune's default (--round-to auto: width step chosen by timing whole models, layer latency
tables) and Torch-Pruning's Taylor pruner with round_to=16 at the same MACs, exported to ONNX and
timed round-robin in one onnxruntime process with worker threads not spinning (CPU, 2 threads,
batch 1; CUDA batch 1 when a GPU is there), five repeats: the median and, in brackets, the lowest
and highest efficiency of the repeats. ``--all`` adds onnxprune with plain FLOPs-driven widths
(--round-to 1), with --round-to 16, with --target-latency equal to the MAC share the default
reached, and Torch-Pruning with its default widths; ``--batches 1 8`` adds batch 8.
Efficiency = speed-up ÷ MAC reduction. Pruning quality is not the point here (random weights,
one fine-tuning step per round); widths are. ``--structures auto width both depth`` runs onnxprune
with each --structure (auto, the default: blocks then channels under a target; width: channels
only; depth: blocks as far as they go), the same target and step.

    python benchmarks/speedup.py [--models resnet18 mobilenet_v2 resnet50] [--all] [--structures auto width both depth]
                                 [--output FILE]
"""

from __future__ import annotations

import argparse
import datetime
import io
import platform
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from peer import taylor_prune_to
from torchvision_onnx import random_images, torchvision_onnx
from zoo import build_torch_model, export_onnx  # torchvision_onnx puts tests/ on the path

from onnxprune import prune
from onnxprune.graph.devices import cuda_available
from onnxprune.graph.flops import count
from onnxprune.graph.load import load
from onnxprune.graph.shapes import probe_shapes
from onnxprune.measure.bench import benchmark, device_name

ROOT = Path(__file__).resolve().parents[1]

FAST = dict(round_steps=1, epochs=0.0, calibration_images=8, batch_size=8, bench=False, max_drop=100.0)


def _macs(model: onnx.ModelProto) -> int:
    loaded = load(model)
    return count(loaded.model, probe_shapes(loaded.model, loaded.image)).macs


def _torch_pruning(name: str, size: int, mac_fraction: float, round_to: int | None, x: np.ndarray) -> onnx.ModelProto:
    import torch_pruning as tp

    model = build_torch_model(name).eval()
    example = torch.from_numpy(x[:1])
    base, _ = tp.utils.count_ops_and_params(model, example)
    batch = torch.from_numpy(x[:8])
    pruned = taylor_prune_to(model, example, lambda m: m(batch).logsumexp(1).mean(), mac_fraction * base, round_to)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "tp.onnx"
        export_onnx(pruned.eval(), path, "torchscript", size=size)
        return onnx.load(str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2", "resnet50"])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--target-flops", type=float, default=0.3)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--all", action="store_true", help="every variant, not the three-way comparison")
    parser.add_argument("--batches", type=int, nargs="+", default=[1])
    parser.add_argument("--structures", nargs="+", default=["auto"], choices=["auto", "width", "both", "depth"],
                        help="onnxprune for each --structure: the default (auto), width only, blocks then channels, "
                             "blocks as far as they go")
    parser.add_argument("--output", type=Path, help="where the table is saved "
                        "(default benchmarks/results/speedup-<date>.txt)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    settings = [("cpu", 2, b) for b in args.batches]
    if cuda_available():
        settings += [("cuda", None, b) for b in args.batches]
    out = io.StringIO()

    def say(line: str = "") -> None:
        print(line, flush=True)
        out.write(line + "\n")

    say(f"# speedup.py {datetime.date.today()} on {device_name('cpu')}"
        + (f" + {device_name('cuda')}" if cuda_available() else "")
        + f"; torch {torch.__version__}, onnxruntime {__import__('onnxruntime').__version__}, python {platform.python_version()}")
    say(f"# {args.size}×{args.size}, target {args.target_flops:.0%} FLOPs, medians of {args.repeats} round-robin repeats "
        f"of {args.runs} runs, worker threads not spinning\n")
    say(f"{'model':<14}{'method':<32}{'MACs kept':>10}{'MAC red.':>9}" + "".join(
        f"{f'{d} t{t or 1} b{b}':>34}" for d, t, b in settings))
    for name in args.models:
        exported = torchvision_onnx(name, args.size)
        original = load(exported)
        x = random_images(args.images, args.size)
        variants = {"original": original.model}
        ours_variants = (("onnxprune --round-to 1", {"round_to": 1}), ("onnxprune --round-to 16", {"round_to": 16})
                         ) if args.all else ()
        # "(auto)": the width step chosen by timing; the structure the defaults' (auto) unless named
        ours_variants += tuple(("onnxprune (auto)" + ("" if s == "auto" else f" {s}"), {} if s == "auto" else
                                {"structure": s}) for s in args.structures)
        for label, extra in ours_variants:
            result = prune(exported, x, args.target_flops, **FAST, **extra)
            variants[label] = result.model
            hw = result.report.hardware_aware
            if hw is not None and hw.step_candidates:
                say(f"# {name}: width step {hw.round_to} ({hw.step_reason}); efficiency by step "
                    + ", ".join(f"{c['step']}: {c['efficiency']:.2f}" for c in hw.step_candidates))
        base_macs = _macs(original.model)
        ours = _macs(variants["onnxprune (auto)"]) / base_macs
        label = f"onnxprune --target-latency {ours:.2f}"
        if args.all:
            try:
                variants[label] = prune(exported, x, None, target_latency=round(ours, 2), **FAST).model
            except Exception as err:
                say(f"{name:<14}{label:<32} failed: {str(err).splitlines()[0][:100]}")
        peers = (("torch-pruning", None), ("torch-pruning round_to=16", 16)) if args.all else \
            (("torch-pruning round_to=16", 16),)
        for label, rt in peers:
            try:
                variants[label] = _torch_pruning(name, args.size, ours, rt, x)
            except Exception as err:
                say(f"{name:<14}{label:<32} failed: {type(err).__name__}: {str(err).splitlines()[0][:80]}")
        medians: dict[tuple, dict[str, list[float]]] = {}
        for setting in settings:
            device, threads, batch = setting
            for _ in range(args.repeats):
                result = benchmark(list(variants.items()), original.image, device=device, threads=threads,
                                   batch=batch, runs=args.runs)
                for t in result.timings:
                    medians.setdefault(setting, {}).setdefault(t.name, []).append(t.median_ms)
        for label, model in variants.items():
            macs = _macs(model) / base_macs
            cells = []
            for setting in settings:
                base = np.asarray(medians[setting]["original"])
                mine = np.asarray(medians[setting][label])
                speedup = float(np.median(base)) / float(np.median(mine))
                each = base / mine * macs  # efficiency in each repeat
                cells.append(f"{np.median(mine):>8.2f}ms {speedup:>4.2f}x e{speedup * macs:>4.2f} "
                             f"[{each.min():.2f}-{each.max():.2f}]")
            say(f"{name:<14}{label:<32}{macs:>10.3f}{1 / macs:>8.2f}x" + "".join(f"{c:>34}" for c in cells))
    say("\n# per setting: median latency, speed-up vs original, efficiency e = speed-up ÷ MAC reduction "
        "[lowest-highest of the repeats]")
    output = args.output or ROOT / "benchmarks" / "results" / f"speedup-{datetime.date.today()}.txt"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(out.getvalue())


if __name__ == "__main__":
    main()
