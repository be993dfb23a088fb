"""The ``onnxprune`` console entry point run inside the test process.

A subprocess adds an interpreter start and a torch import (seconds each) and proves nothing more
for most CLI tests; the few that need a real process (exit on SIGINT, a fresh import) start one.
"""

from __future__ import annotations

import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout

from onnxprune_cli.main import main

__all__ = ["run_cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    """``onnxprune ARGS`` as a finished process: its exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["onnxprune", *args]
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                main()
            except SystemExit as exit_:
                code = exit_.code if isinstance(exit_.code, int) else int(exit_.code is not None)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(["onnxprune", *args], code, out.getvalue(), err.getvalue())
