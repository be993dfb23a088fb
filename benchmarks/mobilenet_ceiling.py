"""What MobileNetV2 can gain from thinner channels at batch 1: the architecture's own width
multipliers against onnxprune, timed side by side.

torchvision's ``mobilenet_v2(width_mult=α)`` is MobileNetV2 thinned uniformly by its designers,
every width a multiple of 8, nothing misaligned and no layer left wide: the best case of channel
pruning, without any selection. If it runs no closer to its MAC reduction than onnxprune's pruned
model does, the gap is the network's and the device's (fixed costs per node that no channel count
removes), not the selector's. All are exported by torch (224×224, weights=None), onnxprune prunes
the original to the same MACs as the α = 0.5 model with its default widths (fast settings, as
speedup.py: widths are the point), and each file is timed round-robin in one onnxruntime process
with worker threads not spinning (CPU, 2 threads, batch 1 and 8), five repeats. A per-node profile
(onnxruntime's profiler) of α = 0.5 and of onnxprune's model says where the time above
MAC-proportional goes.

    python benchmarks/mobilenet_ceiling.py [--repeats 5] [--runs 30]
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torchvision
from speedup import FAST, _macs
from table import Table
from torchvision_onnx import random_images, torchvision_onnx
from zoo import export_onnx

from onnxprune import prune
from onnxprune.graph.load import load
from onnxprune.measure.bench import benchmark, device_name

MULTIPLIERS = (0.75, 0.5, 0.35)


def _thinned(alpha: float, size: int) -> onnx.ModelProto:
    torch.manual_seed(0)
    model = torchvision.models.mobilenet_v2(width_mult=alpha).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        export_onnx(model, path, "torchscript", size=size)
        return onnx.load(str(path))


def _profile(model: onnx.ModelProto, feed: dict[str, np.ndarray], runs: int) -> dict[str, float]:
    """Mean kernel µs per op type of one run, from onnxruntime's profiler."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.intra_op_num_threads = 2
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "p")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = collections.defaultdict(float)
    count = 0
    for e in events:
        if e.get("cat") == "Session" and e.get("name") == "model_run":
            count += 1
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
            totals[e["args"]["op_name"]] += e["dur"]
    return {op: us / max(count, 1) for op, us in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    table = Table("mobilenet_ceiling.txt",
                  f"# mobilenet_ceiling.py {datetime.date.today()} on {device_name('cpu')}: MobileNetV2 "
                  f"{args.size}×{args.size}, onnxruntime CPU, 2 threads, worker threads not spinning; "
                  f"medians of {args.repeats} round-robin repeats of {args.runs} runs [lowest-highest efficiency]", "")
    exported = torchvision_onnx("mobilenet_v2", args.size)
    original = load(exported)
    base_macs = _macs(original.model)
    variants = {"original": original.model}
    for alpha in MULTIPLIERS:
        variants[f"width_mult {alpha}"] = _thinned(alpha, args.size)
    goal = _macs(variants["width_mult 0.5"]) / base_macs
    x = random_images(32, args.size)
    variants[f"onnxprune (auto) at {goal:.3f}"] = prune(exported, x, goal, **FAST).model
    variants[f"onnxprune --round-to 8 at {goal:.3f}"] = prune(exported, x, goal, round_to=8, **FAST).model
    macs = {name: _macs(m) / base_macs for name, m in variants.items()}
    table.add(f"{'variant':<34}{'MACs kept':>10}" + "".join(f"{f'batch {b}':>32}" for b in args.batches))
    medians: dict[int, dict[str, list[float]]] = {b: collections.defaultdict(list) for b in args.batches}
    for batch in args.batches:
        for _ in range(args.repeats):
            result = benchmark(list(variants.items()), original.image, device="cpu", threads=2, batch=batch,
                               runs=args.runs)
            for t in result.timings:
                medians[batch][t.name].append(t.median_ms)
    for name in variants:
        cells = []
        for batch in args.batches:
            base, mine = np.asarray(medians[batch]["original"]), np.asarray(medians[batch][name])
            each = base / mine * macs[name]
            cells.append(f"{np.median(mine):>8.2f}ms {np.median(base) / np.median(mine):>5.2f}x "
                         f"e{np.median(each):.2f} [{each.min():.2f}-{each.max():.2f}]")
        table.add(f"{name:<34}{macs[name]:>10.3f}" + "".join(f"{c:>32}" for c in cells))
    table.add("")
    table.add("# kernel µs per run by op type at batch 1 (onnxruntime profiler, mean of the runs)")
    feed = {original.image.name: random_images(1, args.size)}
    profiles = {name: _profile(variants[name], feed, args.runs)
                for name in ("original", "width_mult 0.5", f"onnxprune (auto) at {goal:.3f}")}
    ops = sorted({op for p in profiles.values() for op in p}, key=lambda op: -profiles["original"].get(op, 0))
    table.add(f"{'op':<28}" + "".join(f"{name[:26]:>28}" for name in profiles))
    for op in ops:
        table.add(f"{op:<28}" + "".join(f"{profiles[name].get(op, 0.0):>28.0f}" for name in profiles))
    table.add(f"{'all kernels':<28}" + "".join(f"{sum(p.values()):>28.0f}" for p in profiles.values()))
    table.add("")
    table.add("# e = speed-up ÷ MAC reduction. width_mult α: torchvision's own thinner MobileNetV2 (every width a "
              "multiple of 8), the best case of channel pruning")
    table.save()


if __name__ == "__main__":
    main()
