"""Why `onnxprune bench` turns off thread spinning: one model timed beside others, both ways.

ResNet-18 (torchvision, weights=None, 224×224) is timed interleaved with two more sessions of
itself, once with onnxruntime's default spinning worker threads and once without, on 2 threads.
With spinning, the idle sessions' threads busy-wait and take the cores from the one being timed.

    python benchmarks/spinning.py [--model resnet18] [--runs 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from torchvision_onnx import torchvision_onnx

import onnxprune.measure.bench as bench
from onnxprune.graph.load import load
from onnxprune.graph.runtime import make_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    loaded = load(torchvision_onnx(args.model))
    feed = {loaded.image.name: np.random.default_rng(0).standard_normal(loaded.image.shape(1)).astype(np.float32)}
    print(f"# {args.model} 224×224, 3 sessions interleaved, 2 threads each, median ms of the first over "
          f"{args.runs} runs, {args.repeats} repeats")
    for spinning in (True, False):
        # the runner builds its sessions through this name; swap in the setting under test
        bench.make_session = lambda m, d, t, spinning=spinning, **_: make_session(m, d, t, spinning=spinning)
        medians = [float(np.median(bench.time_interleaved([(loaded.model, feed)] * 3, "cpu", 2, 5, args.runs)[0]))
                   for _ in range(args.repeats)]
        print(f"spinning {'on ' if spinning else 'off'}  medians {' '.join(f'{m:6.2f}' for m in medians)} ms")


if __name__ == "__main__":
    main()
