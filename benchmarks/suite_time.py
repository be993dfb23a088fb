"""How long the tests take: CI's job in a fresh clone, and the fast set a developer runs.

Clones the committed HEAD into a temporary folder and times ``bash .ci/run`` there (a fresh
virtual environment, the README's install, every test), then times ``python -m pytest`` (the
fast set) in this checkout with the current interpreter. Prints wall seconds and pytest's own
summary line for each.

    python benchmarks/suite_time.py [--skip-ci]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(command: list[str], cwd: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    summary = [line for line in result.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    return seconds, result.returncode, (summary[-1].strip("= ") if summary else result.stderr.strip()[-200:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-ci", action="store_true", help="only the fast set")
    args = parser.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows = []
    if not args.skip_ci:
        with tempfile.TemporaryDirectory() as scratch:
            clone = Path(scratch) / "clone"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
            rows.append(("bash .ci/run (fresh clone)", *_timed(["bash", ".ci/run"], clone)))
    rows.append(("python -m pytest (fast set)", *_timed([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], ROOT)))
    print(f"# test suite times at {head}")
    print(f"{'job':<30}{'wall s':>8}{'exit':>6}  pytest summary")
    for name, seconds, code, summary in rows:
        print(f"{name:<30}{seconds:>8.0f}{code:>6}  {summary}")


if __name__ == "__main__":
    main()
