"""The torchvision zoo through onnxprune: import, counting and channel groups, per exporter.

For each model (weights=None, 64×64) and each torch exporter: does it import into torch and match
onnxruntime (max abs difference on random inputs), do its MACs agree with onnx-tool's, how many
channel groups it has and how many are prunable, the share of FLOPs that is prunable, and the
reasons that block the rest (graph input/output blocks are expected and not listed).

    python benchmarks/zoo_table.py [--size 64] [--models resnet18 ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from zoo import EXPORTERS, ZOO, build_torch_model, export_onnx, onnx_tool_macs  # noqa: E402

from onnxprune.errors import OnnxpruneError  # noqa: E402
from onnxprune.graph.groups import analyze_groups  # noqa: E402
from onnxprune.graph.load import load  # noqa: E402
from onnxprune.torchview.importer import import_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--models", nargs="+", default=list(ZOO))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"{'model':<28}{'exporter':<12}{'import':>7}{'max|Δ|':>10}{'MACs':>10}{'vs onnx-tool':>13}"
          f"{'groups':>8}{'prunable':>9}{'prunable FLOPs':>15}  blocked by")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            for exporter in EXPORTERS:
                path = Path(tmp) / f"{name}.{exporter}.onnx"
                started = time.perf_counter()
                try:
                    export_onnx(build_torch_model(name), path, exporter, size=args.size)
                except Exception as err:
                    print(f"{name:<28}{exporter:<12} export failed: {type(err).__name__}")
                    continue
                loaded = load(path)
                try:
                    diff = f"{import_model(loaded).max_abs_diff:.1e}"
                    ok = "ok"
                except OnnxpruneError as err:
                    ok, diff = "FAIL", str(err)[:40]
                analysis = analyze_groups(loaded)
                theirs = onnx_tool_macs(loaded)
                reasons = sorted({
                    r.split(" '")[0].split(" (")[0]
                    for g in analysis.groups for r in g.blocked if "graph" not in r
                })
                print(f"{name:<28}{exporter:<12}{ok:>7}{diff:>10}{analysis.cost.macs / 1e6:>9.1f}M"
                      f"{analysis.cost.macs / theirs - 1:>+12.2%}{len(analysis.groups):>8}{len(analysis.prunable):>9}"
                      f"{analysis.prunable_flops_share():>15.1%}  {'; '.join(reasons) or '-'}"
                      f"  ({time.perf_counter() - started:.0f}s)", flush=True)


if __name__ == "__main__":
    main()
