"""LCCL (Dong et al. 2017, low-cost collaborative layers), closed by a measurement.

A low-cost collaborative layer is a cheap 1×1 convolution beside each expensive 3×3 one; the
layer's output is the product of the two after their ReLUs, so wherever the cheap branch gives
zero the expensive convolution need not be computed. Its gain needs a kernel that skips those
positions. This script builds the collaborative form of the VGG sample architecture in torch,
trains it and the plain form alike on the printed-character task (``sample_models/chars.py``),
then measures on fresh renders: held-out accuracy, the share of each layer's output positions
the cheap branch zeroes, the MACs a skipping kernel would save, and both forms exported to ONNX
and timed round-robin in onnxruntime (CPU, 2 threads, batch 1 and 8, worker threads not
spinning) — where no kernel skips, so the two-branch file only adds work.

    python benchmarks/lccl.py [--epochs 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sample_models"))

import build  # noqa: E402
from chars import CLASSES, render_set  # noqa: E402

from onnxprune.graph.load import load  # noqa: E402
from onnxprune.measure.bench import benchmark  # noqa: E402


class Collaborative(nn.Module):
    """A 3×3 conv, BatchNorm and ReLU, times a 1×1 conv, BatchNorm and ReLU on the same input
    (Dong et al.)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.main = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout))
        self.cheap = nn.Sequential(nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))
        self.zeros: list[float] | None = []  # per forward while recording: the share of gate positions at zero

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.relu(self.cheap(x))
        if not self.training and self.zeros is not None:
            self.zeros.append(float((gate == 0).float().mean()))
        return torch.relu(self.main(x)) * gate


def vgg(collaborative: bool) -> nn.Module:
    """The sample VGG (build.VGG), its 3×3 conv + ReLU pairs collaborative where asked."""
    model = build.VGG(len(CLASSES))
    if not collaborative:
        return model
    layers = list(model.features)
    out: list[nn.Module] = []
    i = 0
    while i < len(layers):
        if isinstance(layers[i], nn.Conv2d):
            out.append(Collaborative(layers[i].in_channels, layers[i].out_channels))
            i += 2  # the conv and its ReLU
        else:
            out.append(layers[i])
            i += 1
    model.features = nn.Sequential(*out)
    return model


def layer_macs(model: nn.Module, size: int = 32) -> list[tuple[int, int]]:
    """(main MACs, cheap MACs) of each collaborative layer at one image."""
    macs, side = [], size
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            side //= 2
        if isinstance(layer, Collaborative):
            cin, cout = layer.main[0].in_channels, layer.main[0].out_channels
            macs.append((cin * cout * 9 * side * side, cin * cout * side * side))
    return macs


def total_macs(model: nn.Module, size: int = 32) -> int:
    side, total = size, 0
    for layer in model.features:
        if isinstance(layer, nn.MaxPool2d):
            side //= 2
        if isinstance(layer, nn.Conv2d):
            total += layer.in_channels * layer.out_channels * 9 * side * side
    for layer in model.classifier:
        if isinstance(layer, nn.Linear):
            total += layer.in_features * layer.out_features
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(2)
    images, labels = render_set(40, 2)
    x, y = build.as_tensor(images), torch.from_numpy(labels)
    models = {}
    for collaborative in (False, True):
        torch.manual_seed(0)
        started = time.perf_counter()
        models[collaborative] = build.train_rendered(vgg(collaborative), args.epochs, build.CHAR_PER_CLASS, seed=0)
        print(f"# trained {'collaborative' if collaborative else 'plain'} VGG: {args.epochs} epochs of "
              f"{build.CHAR_PER_CLASS * len(CLASSES)} renders, {time.perf_counter() - started:.0f} s", flush=True)
    plain, collab = models[False], models[True]
    layers = [m for m in collab.features if isinstance(m, Collaborative)]
    for layer in layers:
        layer.zeros = []
    acc_plain, acc_collab = build.accuracy(plain, x, y), build.accuracy(collab, x, y)  # records the gates
    macs = layer_macs(collab)
    print(f"\n# {len(y)} fresh renders (seed 2); MACs per image at 32×32\n")
    print(f"{'layer':<8}{'main MACs':>12}{'cheap MACs':>12}{'zeroed':>9}{'skippable MACs':>16}")
    skipped = extra = 0
    for k, (layer, (main_macs, cheap_macs)) in enumerate(zip(layers, macs)):
        share = float(np.mean(layer.zeros))
        skipped += share * main_macs
        extra += cheap_macs
        print(f"conv{k + 1:<4}{main_macs:>12,}{cheap_macs:>12,}{share:>9.1%}{share * main_macs:>16,.0f}")
    base = total_macs(plain)
    print(f"\n{'form':<34}{'accuracy':>9}{'MACs':>14}{'share':>8}")
    print(f"{'plain VGG':<34}{acc_plain:>9.2%}{base:>14,}{1:>8.2f}")
    print(f"{'collaborative, every MAC computed':<34}{acc_collab:>9.2%}{base + extra:>14,.0f}{(base + extra) / base:>8.2f}")
    skipping = base + extra - skipped
    print(f"{'collaborative, zeros skipped':<34}{acc_collab:>9.2%}{skipping:>14,.0f}{skipping / base:>8.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, model in (("plain", plain), ("collaborative", collab)):
            for layer in layers:
                layer.zeros = None  # no recording inside the exported graph
            path = Path(tmp) / f"{name}.onnx"
            build.export(model.eval(), path)
            paths.append(path)
        loaded = [load(p) for p in paths]
        print("\n# onnxruntime CPU, 2 threads, round-robin, medians of repeats (no kernel skips zeros)\n")
        for batch in (1, 8):
            ratios = []
            for _ in range(args.repeats):
                result = benchmark([("plain", loaded[0].model), ("collaborative", loaded[1].model)],
                                   loaded[0].image, device="cpu", threads=2, batch=batch, runs=args.runs)
                ratios.append(result.timings[1].median_ms / result.timings[0].median_ms)
            print(f"batch {batch}: collaborative file takes {np.median(ratios):.2f}× the plain one's time "
                  f"[{min(ratios):.2f}-{max(ratios):.2f}]")


if __name__ == "__main__":
    main()
