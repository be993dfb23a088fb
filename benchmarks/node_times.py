"""Where a pruned model's time goes: onnxruntime's own per-node profile, original beside pruned.

A torchvision CNN (weights=None, 224×224) is pruned to 30 % of its FLOPs with onnxprune's default
widths (the fast settings of speedup.py: widths are the point, not accuracy), then both models
run under onnxruntime's profiler (CPU, 2 threads, batch 1). Per Conv/Gemm node: its MACs and
kernel time before → after, and how much of the after-time is above what its MAC share would
give ("excess"). The excess is what keeps efficiency (speed-up ÷ MAC reduction) below 1.

    python benchmarks/node_times.py [--model mobilenet_v2] [--runs 50]
"""

from __future__ import annotations

import argparse
import collections
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
from speedup import FAST
from torchvision_onnx import random_images, torchvision_onnx

from onnxprune import prune
from onnxprune.graph.flops import count
from onnxprune.graph.load import load
from onnxprune.graph.shapes import probe_shapes


_ACTIVATIONS = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "BatchNormalization"}


def _producers(model: onnx.ModelProto) -> dict[str, str]:
    """Tensor → the node whose work onnxruntime fuses into it: a MAC node's output, and the
    outputs of the activations that follow it (ORT names rewritten nodes after those)."""
    owner: dict[str, str] = {}
    for node in model.graph.node:
        if node.op_type in ("Conv", "Gemm", "MatMul"):
            owner[node.output[0]] = node.name
        elif node.op_type in _ACTIVATIONS and node.input and node.input[0] in owner:
            owner[node.output[0]] = owner[node.input[0]]
    return owner


def _session(model: onnx.ModelProto, folder: Path, stem: str):
    import onnxruntime as ort

    path = folder / f"{stem}.onnx"
    onnx.save(model, path)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(folder / stem)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _profile_interleaved(models: list[onnx.ModelProto], x: np.ndarray, runs: int, folder: Path):
    """Per model: median kernel microseconds per ONNX node name, and the median whole run. The
    models run in turn, run after run, so both see the same machine; medians drop cold runs."""
    sessions = [_session(m, folder, f"m{i}") for i, m in enumerate(models)]
    for _ in range(runs):
        for session in sessions:
            session.run(None, {session.get_inputs()[0].name: x})
    results = []
    for model, session in zip(models, sessions):
        events = json.loads(Path(session.end_profiling()).read_text())
        owner = _producers(model)
        per_node: dict[str, list[float]] = collections.defaultdict(list)
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                name = e["name"][: -len("_kernel_time")].removesuffix("_nchwc")
                per_node[owner.get(name, name)].append(e["dur"])
        model_run = [e["dur"] for e in events if e.get("name") == "model_run"]
        results.append(({n: float(np.median(d)) for n, d in per_node.items()}, float(np.median(model_run))))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--target-flops", type=float, default=0.3)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    exported = torchvision_onnx(args.model)
    x = random_images(32)
    pruned = prune(exported, x, args.target_flops, **FAST).model
    original = load(exported).model
    with tempfile.TemporaryDirectory() as tmp:
        (times_a, run_a), (times_b, run_b) = _profile_interleaved([original, pruned], x[:1], args.runs, Path(tmp))
    macs_a = {n.name: n.macs for n in count(original, probe_shapes(original, load(original).image)).nodes}
    macs_b = {n.name: n.macs for n in count(pruned, probe_shapes(pruned, load(pruned).image)).nodes}
    mac_share = sum(macs_b.values()) / sum(macs_a.values())
    print(f"# node_times.py: {args.model} 224×224 pruned to {args.target_flops:.0%} FLOPs (default widths), "
          f"onnxruntime CPU, 2 threads, batch 1, medians of {args.runs} profiled runs, interleaved\n")
    print(f"{'node':<52}{'MACs kept':>10}{'µs before':>11}{'µs after':>10}{'time kept':>10}{'excess µs':>10}")
    excess_total = 0.0
    for name, before in sorted(times_a.items(), key=lambda kv: -kv[1]):
        if macs_a.get(name, 0) == 0:
            continue
        after = times_b.get(name, 0.0)
        kept = macs_b.get(name, 0) / macs_a[name]
        excess = after - kept * before
        excess_total += excess
        print(f"{name[-52:]:<52}{kept:>10.2f}{before:>11.0f}{after:>10.0f}{after / before:>10.2f}{excess:>10.0f}")
    kernels_a, kernels_b = sum(times_a.values()), sum(times_b.values())
    small = sorted(t for n, t in times_b.items() if macs_b.get(n))[:10]
    print(f"\nMACs kept {mac_share:.3f}; whole run {run_a:.0f} → {run_b:.0f} µs ({run_b / run_a:.3f}, "
          f"efficiency {mac_share / (run_b / run_a):.2f}); kernels {kernels_a:.0f} → {kernels_b:.0f} µs; "
          f"outside kernels {run_a - kernels_a:.0f} → {run_b - kernels_b:.0f} µs")
    print(f"excess over MAC-proportional time in MAC nodes: {excess_total:.0f} µs of {run_b:.0f}; "
          f"the 10 fastest MAC nodes after pruning take {np.median(small):.0f} µs each (median)")


if __name__ == "__main__":
    main()
