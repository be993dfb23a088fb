"""Prune → INT8 for deployment: original, INT8 only, pruned to 30 % of the FLOPs, and pruned + INT8,
timed side by side in onnxruntime, with size and agreement with the original.

Latency models: torchvision resnet18, resnet50 and mobilenet_v2 (weights=None, 224×224) pruned with
onnxprune's defaults on seeded random images and a short schedule (latency follows widths, not
weights); their "agreement" is top-1 agreement and output cosine with the original on 64 random
inputs: how far the outputs moved, not accuracy. Quality model: the digits ResNet sample (labels,
3 epochs of fine-tuning), whose held-out accuracy shows what INT8 costs on a trained model, with
INT8 weights at full 8-bit range beside the 7-bit range onnxprune uses (see quantize.py).

All four variants of a model are timed interleaved in one process (onnxruntime CPU, 2 threads,
worker threads not spinning, batch 1 and 8), three repeats of --runs each, medians.

    python benchmarks/deploy.py [--models resnet18 resnet50 mobilenet_v2] [--runs 30] [--output deploy.txt]
"""

from __future__ import annotations

import argparse
import datetime
import logging
import platform
import warnings
from pathlib import Path

import numpy as np
import onnx

from table import Table
from torchvision_onnx import random_images, torchvision_onnx

from onnxprune import prune
from onnxprune.data.sources import load_data, split
from onnxprune.graph.load import load
from onnxprune.graph.runtime import run_batched
from onnxprune.measure.bench import benchmark, device_name
from onnxprune.measure.metrics import compare_outputs
from onnxprune.stages.quantize import quantize_int8

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_models" / "digits_resnet.onnx"
FAST = dict(round_steps=1, epochs=0.0, calibration_images=16, batch_size=8, bench=False, max_drop=100)


def _variants(model: onnx.ModelProto, data: np.ndarray, calib: np.ndarray, **options) -> dict[str, onnx.ModelProto]:
    loaded = load(model)
    name = loaded.image.name
    pruned = prune(model, data, 0.3, **options).model
    return {"original": loaded.model, "INT8": quantize_int8(loaded.model, name, calib),
            "pruned 0.3": load(pruned).model, "pruned 0.3 + INT8": quantize_int8(load(pruned).model, name, calib)}


def _times(variants: dict[str, onnx.ModelProto], image, batch: int, runs: int, repeats: int = 3) -> dict[str, float]:
    medians = []
    for _ in range(repeats):
        result = benchmark(list(variants.items()), image, device="cpu", threads=2, batch=batch, runs=runs)
        medians.append([t.median_ms for t in result.timings])
    return dict(zip(variants, np.median(medians, axis=0)))


def _row(model: str, name: str, m: onnx.ModelProto, ms1: float, ms8: float, base1: float, base8: float,
         quality: str) -> str:
    return (f"{model:<14} {name:<19} {m.ByteSize() / 1e6:8.2f} {ms1:9.2f} {base1 / ms1:6.2f}x {ms8:9.2f} "
            f"{base8 / ms8:6.2f}x  {quality}")


def _op_profile(variants: dict[str, onnx.ModelProto], image, runs: int) -> dict[str, dict[str, tuple[int, float]]]:
    """Per model: (nodes run, median µs per run) by op type, from onnxruntime's profiler (batch 1,
    2 threads, the models in turn run after run)."""
    import json
    import tempfile
    from collections import defaultdict

    import onnxruntime as ort

    from onnxprune.graph.shapes import random_input

    x = random_input(image.shape(1))
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for i, (name, model) in enumerate(variants.items()):
            options = ort.SessionOptions()
            options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.enable_profiling = True
            options.profile_file_prefix = f"{tmp}/m{i}"
            sessions[name] = ort.InferenceSession(model.SerializeToString(), options,
                                                  providers=["CPUExecutionProvider"])
        for _ in range(runs):
            for session in sessions.values():
                session.run(None, {image.name: x})
        result = {}
        for name, session in sessions.items():
            events = json.loads(Path(session.end_profiling()).read_text())
            per_type: dict[str, float] = defaultdict(float)
            nodes: dict[str, set] = defaultdict(set)
            for e in events:
                if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                    op = e.get("args", {}).get("op_name", "?")
                    per_type[op] += e["dur"]
                    nodes[op].add(e["name"])
            result[name] = {op: (len(nodes[op]), per_type[op] / runs) for op in per_type}
    return result


def _add_profile(table: Table, model: str, variants: dict[str, onnx.ModelProto], image, runs: int) -> None:
    """Where the pruned model's time goes at batch 1, float beside INT8: kernels by op type."""
    profile = _op_profile({k: variants[k] for k in ("pruned 0.3", "pruned 0.3 + INT8")}, image, runs)
    for variant, ops in profile.items():
        total = sum(us for _, us in ops.values())
        parts = ", ".join(f"{op} {n}x {us:.0f}" for op, (n, us) in sorted(ops.items(), key=lambda kv: -kv[1][1]))
        table.add(f"#   {model} {variant}, batch 1, onnxruntime's profiler: {total:.0f} µs in kernels per run "
                  f"(op type, nodes, µs): {parts}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet18", "resnet50", "mobilenet_v2"])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--output", default="deploy.txt")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.getLogger("onnxprune").setLevel(logging.WARNING)
    header = (f"{'model':<14} {'variant':<19} {'size MB':>8} {'b1 ms':>9} {'b1 up':>7} {'b8 ms':>9} {'b8 up':>7}  "
              "quality against the original")
    table = Table(args.output,
                  f"# prune -> INT8: onnxruntime CPU on {device_name('cpu')}, 2 threads, batch 1 and 8, interleaved, "
                  f"median of 3 x {args.runs} runs; pruned = onnxprune defaults at --target-flops 0.3; INT8 = static "
                  "QDQ, per-channel weights (7-bit range), min/max calibration", header)

    # quality on a trained model: the digits sample, held-out accuracy
    sample = load(SAMPLE)
    data = load_data(SAMPLE.parent / "digits", sample.image, labels="imagefolder")
    train, val = split(data, 0.15, 0, 500)
    calib = train.subset(np.arange(128)).inputs
    variants = _variants(sample.model, data, calib, labels="imagefolder", epochs=3.0, bench=False, max_drop=100)
    variants["INT8, 8-bit weights"] = quantize_int8(sample.model, sample.image.name, calib, reduce_range=False)
    variants["pruned + INT8, 8-bit"] = quantize_int8(variants["pruned 0.3"], sample.image.name, calib,
                                                     reduce_range=False)
    times1 = _times(variants, sample.image, 1, args.runs)
    times8 = _times(variants, sample.image, 8, args.runs)
    for name, m in variants.items():
        outputs = run_batched(m, sample.image.name, val)
        q = compare_outputs(outputs, run_batched(sample.model, sample.image.name, val), val.labels)
        table.add(_row("digits_resnet", name, m, times1[name], times8[name], times1["original"], times8["original"],
                       f"accuracy {q['accuracy']:.2%} on {len(val)} held-out digits, top-1 agreement "
                       f"{q['top1_agreement']:.2%}"))

    _add_profile(table, "digits_resnet", variants, sample.image, args.runs)

    for name in args.models:
        model = torchvision_onnx(name)
        x = random_images(64, 224)
        variants = _variants(model, x[:32], x[:16], **FAST)
        image = load(model).image
        times1 = _times(variants, image, 1, args.runs)
        times8 = _times(variants, image, 8, args.runs)
        reference = run_batched(variants["original"], image.name, x[32:])
        for variant, m in variants.items():
            q = compare_outputs(run_batched(m, image.name, x[32:]), reference, None)
            table.add(_row(name, variant, m, times1[variant], times8[variant], times1["original"], times8["original"],
                           f"top-1 agreement {q['top1_agreement']:.0%}, cosine {q['cosine']:.3f} (32 random inputs)"))
        _add_profile(table, name, variants, image, args.runs)
    table.add(f"# {datetime.date.today()}, {platform.machine()}, python benchmarks/deploy.py "
              f"--models {' '.join(args.models)} --runs {args.runs}")
    table.save()


if __name__ == "__main__":
    main()
