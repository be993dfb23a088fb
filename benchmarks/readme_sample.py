"""The README's first command, run as a new user runs it: its prune step, read from the README
itself, in a fresh copy of the bundled sample. What it prints on stdout is the README's summary
block (tests/test_docs.py checks that the two are equal).

    python benchmarks/readme_sample.py

Prints the summary and saves benchmarks/results/readme_sample.txt; a header line says where it ran
and how busy the machine was (the one-minute load average: above the core count, other work
shared the cores and the times are longer than a quiet machine's).
"""

from __future__ import annotations

import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from table import Table  # noqa: E402

LAUNCH = "import sys; sys.path.insert(0, {root!r}); sys.argv[0] = 'onnxprune'; from cli.main import main; main()"


def readme_command() -> list[str]:
    """The arguments of the `onnxprune …` step of the README's first command."""
    first = next(line for line in (ROOT / "README.md").read_text().splitlines() if " && onnxprune " in line)
    return shlex.split(first.split(" && onnxprune ", 1)[1])


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    return platform.processor() or platform.machine()


def main() -> None:
    args = readme_command()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")  # a busy machine inflates the times
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sample_models").mkdir()
        for name in ("digits_resnet.onnx", "digits"):
            source = ROOT / "sample_models" / name
            (shutil.copytree if source.is_dir() else shutil.copy)(source, Path(tmp) / "sample_models" / name)
        done = subprocess.run([sys.executable, "-c", LAUNCH.format(root=str(ROOT)), *args], cwd=tmp,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "ONNXPRUNE_CACHE_DIR": tmp})
    if done.returncode != 0:
        sys.exit(f"the README's command failed with exit code {done.returncode}")
    table = Table("readme_sample.txt", f"# onnxprune {' '.join(args)}  ({cpu_name()}, {os.cpu_count()} cores, "
                                       f"load average {load:.1f} at the start, fresh latency cache)")
    for line in done.stdout.rstrip("\n").splitlines():
        table.add(line)
    table.save()


if __name__ == "__main__":
    main()
