"""torchrun with two processes on the CPU (gloo): a valid model, the widths one process chooses,
and one writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SAMPLES

from onnxprune.torchview.distributed import gather_batches, ranks

ARGS = [str(SAMPLES / "digits_vgg.onnx"), "--data", str(SAMPLES / "digits"), "--labels", "imagefolder",
        "--target-flops", "0.5", "--rounds", "1", "--round-steps", "2", "--epochs", "0.1", "--round-to", "1",
        "--no-bench", "--max-drop", "100", "--workers", "0"]


def test_one_process_needs_no_process_group() -> None:
    assert ranks().world == 1 and ranks().main
    assert gather_batches({"t": {1: "b", 0: "a"}}) == {"t": ["a", "b"]}


@pytest.mark.slow
def test_two_processes_choose_the_widths_of_one_and_write_once(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # both runs alike: thread counts change how sums round
    single = subprocess.run([sys.executable, "-m", "onnxprune", *ARGS, "-o", str(tmp_path / "single.onnx")],
                            capture_output=True, text=True, env=env, timeout=600)
    assert single.returncode == 0, single.stderr
    out = tmp_path / "two" / "pruned.onnx"
    out.parent.mkdir()
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "onnxprune", *ARGS, "-o", str(out)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("wrote ") == 1  # rank 0 alone reports and writes
    assert sorted(p.name for p in out.parent.iterdir()) == ["pruned.onnx", "pruned.report"]
    report = json.loads((tmp_path / "two" / "pruned.report" / "report.json").read_text())
    alone = json.loads((tmp_path / "single.report" / "report.json").read_text())
    assert report["runtime"]["processes"] == 2 and alone["runtime"]["processes"] == 1
    assert report["widths"]["after"] == alone["widths"]["after"]
    assert report["verification"]["max_abs_error"] < 1e-3
    assert report["flops"]["after"] <= 0.5 * report["flops"]["before"]
