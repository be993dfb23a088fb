"""A run killed at any point continues with --resume and ends with the very model an
uninterrupted run writes (the CPU, the same seed)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_run import run_cli
from conftest import SAMPLES

ARGS = ["--data", str(SAMPLES / "digits"), "--labels", "imagefolder", "--target-flops", "0.4", "--rounds", "3",
        "--round-steps", "6", "--epochs", "0.3", "--round-to", "1", "--no-bench", "--max-drop", "100",
        "--workers", "1"]
MODEL = str(SAMPLES / "digits_mobilenet.onnx")


def _state(report: Path) -> dict | None:
    path = report / "checkpoint" / "state.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _onnxprune(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "onnxprune", MODEL, *args], capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_model(tmp_path: Path) -> None:
    # every run in a fresh interpreter with the same environment, as a user's would be: tests before
    # this one may have changed it (importing ultralytics sets OMP_NUM_THREADS=1, and torch's
    # thread count changes how sums are rounded)
    whole = _onnxprune(*ARGS, "-o", str(tmp_path / "whole.onnx"))
    assert whole.returncode == 0, whole.stderr
    assert not (tmp_path / "whole.report" / "checkpoint").exists()  # a finished run leaves none

    out = tmp_path / "killed.onnx"
    process = subprocess.Popen([sys.executable, "-m", "onnxprune", MODEL, *ARGS, "-o", str(out)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        state = _state(tmp_path / "killed.report")
        if state and state["pass"] == "rounds" and (state["step"] or 0) >= 2:  # round 2 of 3: kill it in round 3
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not out.exists()
    stopped_after = _state(tmp_path / "killed.report")["stage_name"]

    resumed = _onnxprune(*ARGS, "-o", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming after {stopped_after}" in resumed.stderr
    assert out.read_bytes() == (tmp_path / "whole.onnx").read_bytes()
    report = json.loads((tmp_path / "killed.report" / "report.json").read_text())
    assert report["resumed_after"] == stopped_after and len(report["trajectory"]) == 4


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path: Path) -> None:
    from onnxprune.graph.load import load
    from onnxprune.report import LosslessCounts
    from onnxprune.stages.checkpoint import Checkpoints

    model = load(MODEL).model
    Checkpoints(tmp_path, "one").save("rounds", 1, "round 1/3", model, [], LosslessCounts())
    with pytest.raises(Exception, match="another model, data or settings"):
        Checkpoints(tmp_path, "other").load()
    loaded = Checkpoints(tmp_path, "one").load()
    assert (loaded.pass_name, loaded.step, loaded.name) == ("rounds", 1, "round 1/3")
    state = json.loads((tmp_path / "state.json").read_text())
    (tmp_path / "state.json").write_text(json.dumps(state | {"format": 1}))  # numbered stages, before passes
    with pytest.raises(Exception, match="another version of onnxprune"):
        Checkpoints(tmp_path, "one").load()
    result = run_cli(MODEL, *ARGS, "-o", str(tmp_path / "none.onnx"), "--resume")
    last = result.stderr.splitlines()[-1]
    assert result.returncode == 1 and last.startswith("onnxprune: error: --resume: no checkpoint")
