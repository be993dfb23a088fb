"""How far would removing whole blocks take MobileNetV2's efficiency? A ceiling study.

At batch 1 on a 2-thread CPU every node of MobileNetV2 keeps a fixed cost that no channel count
removes (benchmarks/results/node_times.txt), so channel pruning alone stays well below an
efficiency (speed-up ÷ MAC reduction) of 0.8 there. Depth pruning removes nodes. Before building
it, this script measures what it could give at best: torchvision's MobileNetV2 (weights=None,
224×224) with some of its residual blocks replaced by the identity (what removing a block does,
less the constant its branch would leave behind, which folds into the next 1×1 convs' biases),
then pruned by onnxprune's default path to the same share of the *original* model's FLOPs. All
variants are timed interleaved in one onnxruntime run (CPU, 2 threads, batch 1), medians of
repeats. Accuracy is not measured: removing whole blocks of a trained network costs far more
than the channels do, so these rows are an upper bound on what depth pruning buys in speed.

    python benchmarks/depth_ceiling.py [--target-flops 0.3] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import io
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from speedup import FAST, _macs
from torchvision_onnx import random_images, torchvision_onnx
from zoo import build_torch_model, export_onnx  # torchvision_onnx puts tests/ on the path

from onnxprune import prune
from onnxprune.graph.load import load
from onnxprune.measure.bench import benchmark, device_name

ROOT = Path(__file__).resolve().parents[1]

# torchvision's MobileNetV2 residual blocks (features.i); the last of each stage first
REMOVALS = {
    "4 blocks (6, 10, 13, 16)": (6, 10, 13, 16),
    "6 blocks (+5, 9)": (5, 6, 9, 10, 13, 16),
    "all 10 residual blocks": (3, 5, 6, 8, 9, 10, 12, 13, 15, 16),
}


def _without_blocks(blocks: tuple[int, ...]) -> onnx.ModelProto:
    model = build_torch_model("mobilenet_v2")
    for i in blocks:
        model.features[i] = torch.nn.Identity()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(model, path, "torchscript", size=224)
        return onnx.load(str(path))


def _nodes(model: onnx.ModelProto) -> int:
    return sum(n.op_type in ("Conv", "Gemm", "Add") for n in model.graph.node)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-flops", type=float, default=0.3)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    out = io.StringIO()

    def say(line: str = "") -> None:
        print(line, flush=True)
        out.write(line + "\n")

    x = random_images(args.images)
    original = torchvision_onnx("mobilenet_v2")
    base = _macs(original)
    variants = {"original": load(original).model}
    dead: dict[str, int] = {}  # channels the lossless pass found dead on the random images

    def pruned(label: str, model: onnx.ModelProto, share: float) -> None:
        result = prune(model, x, min(share, 1.0), **FAST)
        variants[label] = result.model
        dead[label] = result.report.lossless.dead_channels_removed

    pruned("channels only (default)", original, args.target_flops)
    for label, blocks in REMOVALS.items():
        shallow = _without_blocks(blocks)
        variants[f"{label}, unpruned"] = shallow
        # a share of the shallow model's FLOPs that is the target's share of the original's
        pruned(f"{label}, pruned", shallow, args.target_flops * base / _macs(shallow))
    medians: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        result = benchmark(list(variants.items()), load(original).image, device="cpu", threads=2, batch=1,
                           runs=args.runs)
        for t in result.timings:
            medians.setdefault(t.name, []).append(t.median_ms)
    say(f"# depth_ceiling.py {datetime.date.today()} on {device_name('cpu')}: mobilenet_v2 224×224, "
        f"target {args.target_flops:.0%} of the original's FLOPs; onnxruntime CPU, 2 threads, batch 1, "
        f"medians of {args.repeats} interleaved runs of {args.runs}\n")
    say(f"{'variant':<44}{'Conv+Gemm+Add':>14}{'MACs kept':>10}{'latency':>10}{'speed-up':>9}{'eff.':>6}{'dead removed':>13}")
    base_ms = float(np.median(medians["original"]))
    for label, model in variants.items():
        macs = _macs(model) / base
        ms = float(np.median(medians[label]))
        say(f"{label:<44}{_nodes(model):>14}{macs:>10.3f}{ms:>8.2f}ms{base_ms / ms:>8.2f}x{base_ms / ms * macs:>6.2f}{dead.get(label, ''):>13}")
    say("\n# eff. = speed-up ÷ MAC reduction; blocks are replaced by the identity before export")
    results = ROOT / "benchmarks" / "results"
    results.mkdir(exist_ok=True)
    (results / "depth_ceiling.txt").write_text(out.getvalue())


if __name__ == "__main__":
    main()
