"""--max-drop as the goal against a FLOPs target: on each sample, `--max-drop 1` alone (and with
`--minimize latency`) beside `--target-flops 0.5`, same data, seed and fine-tuning, through the CLI
as a user runs it. Shows FLOPs kept, held-out accuracy, points lost, where the budget run stopped
and why; then every model written is timed with its original, interleaved in one process
(onnxruntime CPU, 2 threads, batch 1, 300 runs): the speed-ups side by side.

    python benchmarks/budget.py [--models digits_resnet.onnx ...] [--epochs 3] [--output budget.txt]
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from table import Table

from onnxprune.measure.bench import benchmark_files

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"

GOALS = {
    "--target-flops 0.5": ["--target-flops", "0.5"],
    "--max-drop 1": ["--max-drop", "1"],
    "--max-drop 1, latency": ["--max-drop", "1", "--minimize", "latency"],
}


def run(model: Path, goal: list[str], epochs: float, out: Path) -> tuple[dict | None, str, float]:
    command = [sys.executable, "-m", "onnxprune", str(model), "--data", str(SAMPLES / "digits"), "--labels",
               "imagefolder", "--epochs", str(epochs), "-o", str(out), "--json", *goal]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        return None, done.stderr.strip().splitlines()[-1], seconds
    return json.loads(done.stdout), "", seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["digits_resnet.onnx", "digits_mobilenet.onnx", "digits_vgg.onnx"])
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--output", default="budget.txt")
    args = parser.parse_args()
    table = Table(args.output,
                  f"# the budget as the goal: labels (imagefolder), {args.epochs:g} epochs of final fine-tuning, seed 0, "
                  "135 held-out digits (one image is 0.74 points), CLI defaults otherwise",
                  f"{'model':<22} {'goal':<22} {'FLOPs kept':>10} {'accuracy':>9} {'before':>8} {'lost':>6} "
                  f"{'speed-up':>8} {'time s':>7}  where it stopped")
    written: dict[str, dict[str, Path]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            written[name] = {}
            for label, goal in GOALS.items():
                out = Path(tmp) / f"{Path(name).stem}.{len(label)}.onnx"
                summary, error, seconds = run(SAMPLES / name, goal, args.epochs, out)
                if summary is None:
                    table.add(f"{name:<22} {label:<22} failed: {error}")
                    continue
                written[name][label] = out
                q, lat, budget = summary["quality"], summary.get("latency"), summary.get("budget")
                speedup = lat["timings"][1]["speedup"] if lat else float("nan")
                stopped = ""
                if budget:
                    rows = json.loads((Path(summary["report_folder"]) / "report.json").read_text())["trajectory"]
                    recovered = [r["round"] for r in rows if r.get("extra_steps") and r.get("kept", True)]
                    stopped = (f"kept round {budget['kept_round']} of {budget['stopped_after']}"
                               f"{f' (rounds {recovered} recovered after more fine-tuning)' if recovered else ''}: "
                               f"{budget['reason']}")
                table.add(f"{name:<22} {label:<22} {summary['flops']['fraction']:>10.1%} "
                          f"{q['after']['accuracy']:>9.2%} {q['before']['accuracy']:>8.2%} "
                          f"{q['drop']['points']:>6.1f} {speedup:>7.2f}x {seconds:>7.0f}  {stopped}")
        table.add("# side by side: each model's outputs timed with its original, interleaved, onnxruntime CPU, "
                  "2 threads, batch 1, 300 runs, median speed-up")
        for name, outputs in written.items():
            result = benchmark_files([SAMPLES / name, *outputs.values()], device="cpu", threads=2, runs=300)
            table.add(f"{name:<22} " + "  ".join(f"{label}: {t.speedup:.2f}x" for label, t in
                                                  zip(outputs, result.timings[1:])))
    table.add(f"# {datetime.date.today()}, python benchmarks/budget.py --epochs {args.epochs:g}")
    table.save()


if __name__ == "__main__":
    main()
