"""How soon a user learns what their few images can tell: seconds from starting the CLI on a
~100 MB detector (YOLOv8m, Ultralytics' export at 256×256, batch fixed at 1, random weights) with
40 images to each line it prints, until the held-out note (before any latency table or round).

    python benchmarks/first_message.py [--work DIR]

Prints the lines with their times and saves benchmarks/results/first_message.txt.
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
sys.path.insert(0, str(ROOT / "tests"))

from jpeg_folder import jpeg_folder  # noqa: E402
from table import Table  # noqa: E402

LAUNCH = "import sys; sys.path.insert(0, {root!r}); sys.argv[0] = 'onnxprune'; from cli.main import main; main()"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, help="where the model and images are kept between runs")
    args = parser.parse_args()
    from detectors import export_yolov8

    work = args.work or Path(tempfile.gettempdir()) / "onnxprune-first-message"
    work.mkdir(parents=True, exist_ok=True)
    model = work / "yolov8m_256.onnx"
    if not model.exists():
        export_yolov8(model, (256, 256), "yolov8m")
    data = jpeg_folder(work / "pages", 40, size=256, classes=1)
    table = Table("first_message.txt", f"# seconds to each line on stderr: {model.name} "
                  f"({model.stat().st_size / 1e6:.0f} MB), 40 images, default options, {os.cpu_count()} cores")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        process = subprocess.Popen([sys.executable, "-c", LAUNCH.format(root=str(ROOT)), str(model), "--data",
                                    str(data), "-o", str(Path(tmp) / "out.onnx")], stderr=subprocess.PIPE, text=True)
        assert process.stderr is not None
        for line in process.stderr:
            if "\r" in line or not line.strip():
                continue
            table.add(f"{time.perf_counter() - started:7.1f} s  {line.rstrip()[:160]}")
            if "held-out images judge" in line:
                break
        process.kill()
        process.wait()
    table.save()


if __name__ == "__main__":
    main()
