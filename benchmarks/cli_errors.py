"""How soon the CLI answers a wrong argument: seconds from starting `onnxprune` to its exit, for
each path a run reads or writes missing, a bad value, a bare `onnxprune` and `--version`; the
median of five fresh processes each. `--baseline CHECKOUT` runs an older tree beside it.

    python benchmarks/cli_errors.py [--baseline DIR]

Prints one line per case and saves benchmarks/results/cli_errors.txt.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from table import Table  # noqa: E402

LAUNCH = "import sys; sys.path.insert(0, {root!r}); sys.argv[0] = 'onnxprune'; from cli.main import main; main()"
SAMPLE = str(ROOT / "sample_models" / "digits_resnet.onnx")
DIGITS = str(ROOT / "sample_models" / "digits")
CASES = {
    "missing model": ["missing.onnx", "--data", DIGITS],
    "missing --data folder": [SAMPLE, "--data", "missing/"],
    "missing --labels CSV": [SAMPLE, "--data", DIGITS, "--labels", "missing.csv"],
    "missing --val-data": [SAMPLE, "--data", DIGITS, "--val-data", "missing/"],
    "missing output folder": [SAMPLE, "--data", DIGITS, "-o", "missing/out.onnx"],
    "--target-flops 2": [SAMPLE, "--data", DIGITS, "--target-flops", "2"],
    "unknown --criterion": [SAMPLE, "--data", DIGITS, "--criterion", "magic"],
    "bare onnxprune": [],
    "--version": ["--version"],
}


def seconds(root: Path, args: list[str], repeats: int) -> tuple[float, int, str]:
    """Median wall seconds of ``repeats`` fresh processes, the exit code and the first stderr line."""
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cwd:
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-c", LAUNCH.format(root=str(root)), *args], cwd=cwd,
                                  capture_output=True, text=True)
            times.append(time.perf_counter() - started)
    first = (done.stderr.strip().splitlines() or done.stdout.strip().splitlines() or [""])[0]
    return statistics.median(times), done.returncode, first


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", type=Path, help="another checkout, timed beside this one")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    header = f"{'case':<24}{'exit':>5}{'s':>7}" + (f"{'baseline s':>12}" if args.baseline else "") + "  first line"
    table = Table("cli_errors.txt", f"# seconds from start to exit, median of {args.repeats} fresh processes, "
                  f"{os.cpu_count()} cores", header)
    for case, argv in CASES.items():
        took, code, first = seconds(ROOT, argv, args.repeats)
        base = f"{seconds(args.baseline, argv, args.repeats)[0]:>12.2f}" if args.baseline else ""
        table.add(f"{case:<24}{code:>5}{took:>7.2f}{base}  {first[:90]}")
    table.save()


if __name__ == "__main__":
    main()
