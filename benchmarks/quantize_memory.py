"""Peak memory of INT8 quantization against the number of calibration images: onnxprune's
quantize_int8 on resnet50 at 224×224 (random weights), 128 (the --calibration-images default)
and 512 images, each in a fresh process. onnxruntime's calibrator reduces each tensor to its
min and max inside the graph, so activations are not kept; this checks that it stays so.

    python benchmarks/quantize_memory.py [--model resnet50] [--images 128 512]
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import onnx

from table import Table


def child(model_path: str, images: int) -> None:
    from torchvision_onnx import random_images

    from onnxprune.graph.load import load
    from onnxprune.stages.quantize import quantize_int8

    loaded = load(model_path)
    quantize_int8(loaded.model, loaded.image.name, random_images(images))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--images", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child[0], int(args.child[1]))
    from torchvision_onnx import torchvision_onnx

    table = Table("quantize_memory.txt",
                  f"# INT8 quantization memory: {args.model} 224x224, calibration in batches of 8, fresh process each, "
                  "peak RSS (ru_maxrss); the calibration inputs themselves are 0.6 MB per image",
                  f"{'images':>7} {'peak RSS MB':>12} {'wall s':>8} {'exit':>5}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{args.model}.onnx"
        onnx.save(torchvision_onnx(args.model), str(path))
        for images in args.images:
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, __file__, "--child", str(path), str(images)])
            _, status, usage = os.wait4(proc.pid, 0)
            table.add(f"{images:>7} {usage.ru_maxrss / 1024:>12.0f} {time.perf_counter() - start:>8.1f} "
                      f"{os.waitstatus_to_exitcode(status):>5}")
    table.add(f"# {datetime.date.today()}, python benchmarks/quantize_memory.py --model {args.model} "
              f"--images {' '.join(map(str, args.images))}")
    table.save()


if __name__ == "__main__":
    main()
