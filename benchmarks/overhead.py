"""The tool's own fixed costs: what a short run spends before its first round of pruning.

For each model, one short run through the CLI (``--target-flops 0.5``, one round of one step, no
final fine-tuning, no timing at the end; everything else at its default, so widths are
hardware-aware with a cold latency cache, and the lossless pass runs) with 40 JPEG images, and the
report's stage times printed: prepare (load, data, teacher outputs), plan widths (width step and
latency tables), lossless pass, and what follows. Models:

- ResNet-50 (torchvision, weights=None) exported by torch at 224×224;
- YOLOv8m (Ultralytics' own exporter, random weights, about 100 MB) at 256×256: a detector-sized
  file, short run, large model.

With ``--baseline DIR`` the same runs use another checkout's ``onnxprune`` (for example the last
landed main, ``git worktree add /tmp/base <commit>``), one after the other on the same machine,
so the table shows before and after. Each run gets a fresh latency cache (a first run, as a user
meets it); ``--warm`` runs each a second time on the cache the first left.

    python benchmarks/overhead.py [--baseline DIR] [--models resnet50 yolov8m] [--warm]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from jpeg_folder import jpeg_folder  # noqa: E402
from table import Table  # noqa: E402

SHORT = ["--target-flops", "0.5", "--rounds", "1", "--round-steps", "1", "--epochs", "0", "--no-bench", "-q"]
LAUNCH = "import sys; sys.path.insert(0, {root!r}); sys.argv[0] = 'onnxprune'; from cli.main import main; main()"
FIXED = ("prepare", "plan widths", "lossless pass")


def _model(name: str, work: Path) -> tuple[Path, int]:
    """The model file and its input size."""
    if name == "resnet50":
        from zoo import build_torch_model, export_onnx

        path = work / "resnet50_224.onnx"
        if not path.exists():
            export_onnx(build_torch_model("resnet50"), path, "torchscript", size=224)
        return path, 224
    if name.startswith("yolov8"):
        from detectors import export_yolov8

        path = work / f"{name}_256.onnx"
        if not path.exists():
            export_yolov8(path, (256, 256), name)
        return path, 256
    raise SystemExit(f"unknown model {name}")


def stage_times(root: Path, model: Path, data: Path, cache: Path) -> dict[str, float]:
    """The report's stage times of one short run with ``root``'s onnxprune."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.onnx"
        env = {**os.environ, "ONNXPRUNE_CACHE_DIR": str(cache)}
        subprocess.run([sys.executable, "-c", LAUNCH.format(root=str(root)), str(model), "--data", str(data),
                        "-o", str(out), *SHORT], check=True, env=env, stdout=subprocess.DEVNULL)
        report = json.loads((Path(tmp) / "out.report" / "report.json").read_text())
    return report["stage_times_s"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["resnet50", "yolov8m"])
    parser.add_argument("--baseline", type=Path, help="another checkout, run first, for the 'before' rows")
    parser.add_argument("--warm", action="store_true", help="also a second run on the cache the first left")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "onnxprune-overhead")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    roots = ([("before", args.baseline.resolve())] if args.baseline else []) + [("after", ROOT)]
    table = Table("overhead.txt", f"# fixed costs of a short run, 40 JPEG images, {os.cpu_count()} cores, seconds "
                  "(fresh latency cache unless 'warm')",
                  f"{'model':<10}{'code':<13}" + "".join(f"{s:>15}" for s in FIXED) + f"{'fixed':>9}{'rest':>8}")
    for name in args.models:
        model, size = _model(name, args.work)
        data = jpeg_folder(args.work / f"images_{size}", 40, size=size, classes=1)
        for label, root in roots:
            with tempfile.TemporaryDirectory() as cache:
                runs = [label] + ([f"{label} warm"] if args.warm else [])
                for run in runs:
                    times = stage_times(root, model, data, Path(cache))
                    fixed = sum(times.get(s, 0.0) for s in FIXED)
                    rest = sum(times.values()) - fixed
                    table.add(f"{name:<10}{run:<13}" + "".join(f"{times.get(s, 0.0):>15.1f}" for s in FIXED)
                              + f"{fixed:>9.1f}{rest:>8.1f}")
    table.save()


if __name__ == "__main__":
    main()
