"""How long a default pruning run takes: torchvision resnet50 (weights=None) at 224×224 with 32
random images as data, every setting at its default, on this machine.

    python benchmarks/timing.py [--model resnet50] [--size 224] [--images 32]
"""

from __future__ import annotations

import argparse
import logging
import os
import time

from torchvision_onnx import random_images, torchvision_onnx

from onnxprune import prune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--target-flops", type=float, default=0.3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="  %(relativeCreated)7.0f ms  %(message)s")
    model, x = torchvision_onnx(args.model, args.size), random_images(args.images, args.size)
    started = time.perf_counter()
    report = prune(model, x, args.target_flops).report.as_dict()
    elapsed = time.perf_counter() - started
    print(f"{args.model} {args.size}×{args.size}, {args.images} images, defaults, {os.cpu_count()} CPU cores: "
          f"{elapsed:.0f} s ({elapsed / 60:.1f} min); FLOPs kept {report['flops']['fraction']:.3f}, "
          f"latency speed-up {report['latency']['timings'][1]['speedup']:.2f}x on {report['latency']['threads']} threads")


if __name__ == "__main__":
    main()
