"""Peak memory and time against the size of the data set: synthesized JPEG folders of 500, 2,000
and 8,000 images at 256×256, torchvision's resnet18 (random weights, TorchScript export with a
free batch, BatchNorm folded) at 224×224, labels from the folders, a short schedule
(``--rounds 1 --round-steps 1 --epochs 0.02 --round-to 1 --no-bench``), each run in a fresh process.

    python benchmarks/scale.py [--sizes 500 2000 8000] [--baseline PATH-TO-AN-OLDER-CHECKOUT]
                               [--baseline-sizes 500 2000] [--detectors]

``--detectors`` adds detector-sized inputs instead: YOLOv8n exported by Ultralytics at a fixed
800×608 with 40 JPEG pages and onnxprune's default options (``--target-flops 0.3``, its whole
schedule), and at 1280×1280 with the short schedule above (its peak is that of one fine-tuning
step, which the default schedule repeats); scoring and fine-tuning then work in micro-batches
(memory.py).

Peak RSS is the pruning process's own (``wait4``'s ru_maxrss); "with workers" adds the DataLoader
processes, sampled every 0.1 s as proportional set size (shared pages counted once). With
``--baseline`` the same command runs on another checkout too (its ``onnxprune`` and ``cli``
packages), side by side. Prints the table and saves benchmarks/results/scale.txt.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from jpeg_folder import jpeg_folder  # noqa: E402
from table import Table  # noqa: E402

SCHEDULE = ["--labels", "imagefolder", "--rounds", "1", "--round-steps", "1", "--epochs", "0.02",
            "--round-to", "1", "--no-bench", "--target-flops", "0.5", "--max-drop", "100", "-q"]
LAUNCH = "import sys; sys.path.insert(0, {root!r}); sys.argv[0] = 'onnxprune'; from cli.main import main; main()"


def _tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and its children, MB."""
    total, pending = 0, [pid]
    while pending:
        p = pending.pop()
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(c) for c in children)
        except (OSError, ValueError):
            continue
    return total / 1024


def run(root: Path, model: Path, data: Path, out: Path, schedule: list[str] = SCHEDULE
        ) -> tuple[float, float, float, int]:
    """(peak RSS MB of the main process, peak PSS MB with its workers, wall s, exit code)."""
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", LAUNCH.format(root=str(root)), str(model), "--data",
                                str(data), "-o", str(out), *schedule], stdout=subprocess.DEVNULL)
    peak_tree = 0.0
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            break
        peak_tree = max(peak_tree, _tree_pss_mb(process.pid))
        time.sleep(0.1)
    return usage.ru_maxrss / 1024, peak_tree, time.perf_counter() - start, os.waitstatus_to_exitcode(status)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[500, 2000, 8000])
    parser.add_argument("--baseline", type=Path, help="another checkout to run side by side")
    parser.add_argument("--baseline-sizes", type=int, nargs="*", default=[500, 2000],
                        help="sizes the baseline runs at (the landed code needed 6 GB at 2,000)")
    parser.add_argument("--work", type=Path, help="where the JPEG folders are kept between runs")
    parser.add_argument("--detectors", action="store_true", help="detector-sized inputs instead (see above)")
    args = parser.parse_args()
    if args.detectors:
        return detectors(args)
    from torchvision_onnx import torchvision_onnx
    import onnx

    work = args.work or Path(tempfile.gettempdir()) / "onnxprune-scale"
    work.mkdir(parents=True, exist_ok=True)
    model = work / "resnet18_224.onnx"
    if not model.exists():
        onnx.save(torchvision_onnx("resnet18", 224), str(model))
    checkouts = [("this", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
    table = Table("scale.txt", "# peak memory against data set size: resnet18 224x224, JPEGs 256x256, "
                  f"{' '.join(SCHEDULE[:-1])}, {os.cpu_count()} cores",
                  f"{'code':<10}{'images':>8}{'peak RSS MB':>13}{'with workers MB':>17}{'wall s':>8}{'ms/image':>10}"
                  f"{'exit':>6}")
    for n in args.sizes:
        data = jpeg_folder(work / f"jpegs_{n}", n, size=256)
        for name, root in checkouts:
            if name == "baseline" and n not in args.baseline_sizes:
                continue
            with tempfile.TemporaryDirectory() as tmp:
                rss, tree, wall, code = run(root, model, data, Path(tmp) / "out.onnx")
            table.add(f"{name:<10}{n:>8}{rss:>13.0f}{tree:>17.0f}{wall:>8.1f}{1000 * wall / n:>10.1f}{code:>6}")
    table.save()


def detectors(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from detectors import export_yolov8

    work = args.work or Path(tempfile.gettempdir()) / "onnxprune-scale"
    work.mkdir(parents=True, exist_ok=True)
    short = [a for a in SCHEDULE if a != "imagefolder" and a != "--labels"]
    rows = [("yolov8n", (608, 800), ["-q"], "defaults (--target-flops 0.3)"),
            ("yolov8n", (1280, 1280), short, "short schedule")]
    table = Table("scale_detectors.txt", f"# detector-sized inputs: 40 JPEG pages, {os.cpu_count()} cores; peak "
                  "memory of the whole run", f"{'model':<10}{'input':>11}  {'options':<32}{'peak RSS MB':>13}"
                  f"{'with workers MB':>17}{'wall s':>8}{'exit':>6}")
    for name, (height, width), schedule, label in rows:
        model = work / f"{name}_{height}x{width}.onnx"
        if not model.exists():
            export_yolov8(model, (height, width))
        data = jpeg_folder(work / f"pages_{height}x{width}", 40, size=max(height, width), classes=1)
        with tempfile.TemporaryDirectory() as tmp:
            rss, tree, wall, code = run(ROOT, model, data, Path(tmp) / "out.onnx", schedule)
        table.add(f"{name:<10}{f'{width}x{height}':>11}  {label:<32}{rss:>13.0f}{tree:>17.0f}{wall:>8.1f}{code:>6}")
    table.save()


if __name__ == "__main__":
    main()
