"""Fingerprints of the samples' pruned models, to prove a refactor changed no behaviour.

Prunes every sample model three ways (the default job with labels at 30 %; SFP with the L1
criterion at 50 %; label-free Taylor-squared at any width), each with the same seed, data and
latency cache, and prints the SHA-256 of each written model. Run it on two commits with the same ``ONNXPRUNE_CACHE_DIR``: equal digests
mean byte-identical models.

    ONNXPRUNE_CACHE_DIR=/tmp/cache python benchmarks/identical.py [--out results.txt]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"

MODELS = [
    "digits_vgg.onnx",
    "digits_resnet.onnx",
    "digits_mobilenet.onnx",
    "digits_vgg.default.onnx",
    "digits_resnet.default.onnx",
    "digits_mobilenet.default.onnx",
    "digits_mobilenet.dynamo.onnx",
    "keras_mobilenetv2.onnx",
]
SHORT = ["--epochs", "1", "--no-bench", "--max-drop", "100"]
RUNS = {
    "default": ["--labels", "imagefolder", "--target-flops", "0.3"],
    "sfp-l1": ["--labels", "imagefolder", "--target-flops", "0.5", "--schedule", "sfp", "--criterion", "l1"],
    "label-free": ["--target-flops", "0.5", "--round-to", "1", "--criterion", "taylor-sq"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--models", nargs="*", default=MODELS)
    args = parser.parse_args()
    if "ONNXPRUNE_CACHE_DIR" not in os.environ:
        sys.exit("set ONNXPRUNE_CACHE_DIR so both commits share one latency cache")
    lines = []
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models:
            for run, options in RUNS.items():
                out = Path(scratch) / f"{Path(model).stem}.{run}.onnx"
                command = [sys.executable, "-m", "onnxprune_cli.main", "-q", str(SAMPLES / model),
                           "--data", str(SAMPLES / "digits"), "-o", str(out), *options, *SHORT]
                result = subprocess.run(command, capture_output=True, text=True)
                if result.returncode != 0:
                    digest = f"exit {result.returncode}: {result.stderr.strip().splitlines()[-1:]}"
                else:
                    digest = hashlib.sha256(out.read_bytes()).hexdigest()
                line = f"{model:32s} {run:11s} {digest}"
                print(line, flush=True)
                lines.append(line)
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
