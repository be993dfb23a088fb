"""How well the latency model (``--round-to auto``) predicts what one group's channels save.

For a torchvision CNN (weights=None, 224×224): every prunable group is halved alone (at least to
the measured width step) and the model timed, all variants interleaved with the original in one
onnxruntime run (CPU, 2 threads, batch 1); beside each measured saving, the one the latency
model predicts. The selector ranks channels by these predictions, so a group whose saving is
under-predicted is kept wider than it should be.

    python benchmarks/latency_model.py [--model mobilenet_v2] [--runs 60]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from torchvision_onnx import torchvision_onnx

from onnxprune.graph.flops import count
from onnxprune.graph.groups import analyze_groups, predict_shapes
from onnxprune.graph.load import load
from onnxprune.graph.slice import slice_model
from onnxprune.measure.bench import benchmark
from onnxprune.measure.latency import LocalCache, measure_granularity, measure_latency


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    loaded = load(torchvision_onnx(args.model))
    analysis = analyze_groups(loaded)
    step = measure_granularity(LocalCache("cpu", 2))
    latency = measure_latency(loaded.model, analysis, loaded.image, LocalCache("cpu", 2), granularity=step)
    base = latency.predict(analysis.cost, analysis.shapes)
    variants, predicted, labels = [("original", loaded.model)], {}, {}
    for group in analysis.prunable:
        width = max(step, group.channels // 2 // step * step)
        if width >= group.channels:
            continue
        shapes = predict_shapes(analysis, {group.id: width})
        name = f"group {group.id}"
        predicted[name] = base - latency.predict(count(loaded.model, shapes), shapes)
        labels[name] = f"{group.producers[0][-44:]} {group.channels}→{width}"
        variants.append((name, slice_model(loaded.model, analysis, {group.id: np.arange(width)})))
    result = benchmark(variants, loaded.image, device="cpu", threads=2, runs=args.runs)
    original = result.timings[0]
    print(f"# latency_model.py: {args.model} 224×224, onnxruntime CPU 2 threads batch 1, {args.runs} interleaved runs; "
          f"model fit {latency.rest_ms:+.2f} ms + {latency.scale:.2f} × layers; original {original.median_ms:.2f} ms "
          f"(spread {original.spread:.1%})\n")
    print(f"{'group (first producer, width)':<56}{'measured ms':>12}{'predicted ms':>13}{'measured/pred':>14}")
    ratios = []
    for t in result.timings[1:]:
        measured = original.median_ms - t.median_ms
        ratio = measured / predicted[t.name] if predicted[t.name] > 0 else float("nan")
        ratios.append(ratio)
        print(f"{labels[t.name]:<56}{measured:>12.3f}{predicted[t.name]:>13.3f}{ratio:>14.2f}")
    finite = np.array([r for r in ratios if np.isfinite(r)])
    print(f"\nmeasured ÷ predicted saving over {len(finite)} groups: median {np.median(finite):.2f}, "
          f"range {finite.min():.2f} – {finite.max():.2f} (one model's timing spread is "
          f"{original.spread * original.median_ms:.3f} ms)")


if __name__ == "__main__":
    main()
