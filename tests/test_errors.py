"""Bad input, as a user would give it: one line on stderr, a non-zero exit, no output, input intact."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from cli_run import run_cli
from conftest import SAMPLES
from graphs import GraphBuilder
from onnx import TensorProto, helper
from PIL import Image

FAST = ["--rounds", "1", "--round-steps", "1", "--epochs", "0.2", "--no-bench", "--round-to", "1", "--max-drop", "100"]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def work(tmp_path: Path) -> Path:
    shutil.copy(SAMPLES / "digits_vgg.onnx", tmp_path / "m.onnx")
    return tmp_path


def _lstm_model(path: Path) -> Path:
    g = GraphBuilder(input_shape=(5, 1, 4))
    w, r = g.rand(1, 32, 4), g.rand(1, 32, 8)
    y = g.node("LSTM", ["x", w, r], n_out=3, hidden_size=8)[0]
    onnx.save(g.build([y]), str(path))
    return path


def _int_model(path: Path) -> Path:
    g = GraphBuilder(input_shape=(1, 3, 8, 8))
    g.input = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 3, 8, 8])
    cast = g.node("Cast", ["x"], to=TensorProto.FLOAT)
    onnx.save(g.build([g.conv(cast, 3, 4)]), str(path))
    return path


def _assert_clean_failure(result: subprocess.CompletedProcess, work: Path, message: str, code: int = 1) -> None:
    assert result.returncode == code, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower() or line.startswith("Error")]
    assert errors and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert not list(work.glob("*.pruned*")), "an output was left behind"
    assert not [p for p in work.iterdir() if p.name.startswith(".")], "a temporary file was left behind"


@pytest.mark.parametrize("make, message", [
    (lambda d: _lstm_model(d / "lstm.onnx"), "no Conv"),
    (lambda d: _int_model(d / "int.onnx"), "no float32 input"),
    (lambda d: (d / "t.onnx").write_bytes(b"\x08\x07garbage" * 50) and d / "t.onnx", "ONNX"),
])
def test_models_that_cannot_be_pruned_are_refused(work: Path, make, message: str) -> None:
    path = make(work)
    before = _digest(path)
    result = run_cli(str(path), "--data", str(SAMPLES / "digits"), *FAST)
    _assert_clean_failure(result, work, message)
    assert _digest(path) == before


@pytest.mark.parametrize("extra, message, code", [
    (["--target-flops", "abc"], "is not a valid float", 2),
    (["--target-flops", "-0.2"], "must be in (0, 1]", 2),
    (["--device", "tpu"], "must be one of auto, cpu, cuda", 2),
    (["--target-flops", "0.01"], "cannot be reached", 1),
    (["--batch-size", "0"], "Invalid value for --batch-size: must be at least 1", 2),
    (["--round-to", "eight"], "whole number or 'auto'", 2),
    (["--round-to", "0"], "Invalid value for --round-to: must be at least 1", 2),
    (["--target-latency", "1.5"], "Invalid value for --target-latency: must be in (0, 1]", 2),
    (["--target-latency", "0.001"], "cannot be reached", 1),
    (["--schedule", "oneshot"], "must be one of iterative, sfp", 2),
    (["--criterion", "magic"], "must be one of apoz, bn-scale", 2),
])
def test_bad_settings_are_refused(work: Path, extra: list[str], message: str, code: int) -> None:
    result = run_cli(str(work / "m.onnx"), "--data", str(SAMPLES / "digits"), *FAST, *extra)
    _assert_clean_failure(result, work, message, code)


def test_cuda_without_a_gpu_is_refused(work: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_cli(str(work / "m.onnx"), "--data", str(SAMPLES / "digits"), "--device", "cuda", *FAST)
    _assert_clean_failure(result, work, "no CUDA GPU")


def test_bad_data_is_refused(work: Path) -> None:
    empty = work / "empty"
    empty.mkdir()
    _assert_clean_failure(run_cli(str(work / "m.onnx"), "--data", str(empty), *FAST), work, "holds no images")
    (empty / "notes.txt").write_text("no images here")
    _assert_clean_failure(run_cli(str(work / "m.onnx"), "--data", str(empty), *FAST), work, "holds no images")
    np.save(work / "wrong.npy", np.zeros((4, 3, 28, 28), np.float32))
    _assert_clean_failure(run_cli(str(work / "m.onnx"), "--data", str(work / "wrong.npy"), *FAST), work,
                          "the model needs (N, 3, 32, 32)")
    _assert_clean_failure(run_cli(str(work / "m.onnx"), "--data", str(work / "missing"), *FAST), work,
                          "no such file or folder")


def test_labels_that_do_not_fit_are_refused(work: Path) -> None:
    flat = work / "flat"
    flat.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (i * 60, 0, 0)).save(flat / f"{i}.png")
    _assert_clean_failure(run_cli(str(work / "m.onnx"), "--data", str(flat), "--labels", "imagefolder", *FAST),
                          work, "class sub-folder")
    _assert_clean_failure(run_cli(str(work / "m.onnx"), "--data", str(flat), "--labels", str(work / "no.csv"), *FAST),
                          work, "no such file")


@pytest.mark.parametrize("rows, message", [
    (["0.png,3", "1.png,99", "2.png,1", "3.png,0"], "has class index 99, but the model outputs 10 classes"),
    (["0.png,-1", "1.png,2", "2.png,1", "3.png,0"], "has class index -1"),
    (["file,label", "0.png,cat", "1.png,dog", "2.png,cat", "3.png,dog"], "names classes as strings ('cat', 'dog'"),
])
def test_labels_the_model_cannot_output_are_refused_before_work_starts(work: Path, rows, message: str) -> None:
    flat = work / "flat"
    flat.mkdir()
    for i in range(4):
        Image.new("RGB", (32, 32), (i * 60, 0, 0)).save(flat / f"{i}.png")
    (work / "labels.csv").write_text("\n".join(rows) + "\n")
    started = time.perf_counter()
    result = run_cli(str(work / "m.onnx"), "--data", str(flat), "--labels", str(work / "labels.csv"), *FAST)
    _assert_clean_failure(result, work, message)
    assert len(result.stderr.strip().splitlines()) <= 2 and "latency" not in result.stderr
    assert time.perf_counter() - started < 60


def test_more_class_folders_than_the_model_outputs_are_refused(work: Path) -> None:
    for i in range(12):
        (work / "folders" / f"class_{i:02d}").mkdir(parents=True)
        Image.new("RGB", (32, 32), (i * 20, 0, 0)).save(work / "folders" / f"class_{i:02d}" / "a.png")
    _assert_clean_failure(run_cli(str(work / "m.onnx"), "--data", str(work / "folders"), "--labels", "imagefolder",
                                  *FAST), work, "has 12 class folders, but the model outputs 10 classes")


def test_output_paths_that_would_lose_data_are_refused(work: Path) -> None:
    _assert_clean_failure(run_cli(str(work / "m.onnx"), "--data", str(SAMPLES / "digits"), "-o", str(work / "m.onnx"),
                               *FAST), work, "is the input model")
    _assert_clean_failure(run_cli(str(work / "m.onnx"), "--data", str(SAMPLES / "digits"), "-o",
                               str(work / "nowhere" / "x.onnx"), *FAST), work, "does not exist")


def _unwritable_folder(work: Path) -> Path:
    import tempfile

    locked = work / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    for folder in (locked, Path("/proc")):  # root ignores permission bits; /proc takes no files
        try:
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError:
            return folder
    pytest.skip("no unwritable folder on this machine")


def test_an_unwritable_output_folder_is_refused_before_any_work(work: Path) -> None:
    folder = _unwritable_folder(work)
    result = run_cli(str(work / "m.onnx"), "--data", str(SAMPLES / "digits"), "-o", str(folder / "x.onnx"), *FAST)
    _assert_clean_failure(result, work, "is not writable")


def test_corrupt_and_small_images_are_counted_in_warnings(work: Path) -> None:
    data = work / "imgs"
    shutil.copytree(SAMPLES / "digits", data)
    (data / "0" / "broken.png").write_bytes(b"\x89PNG broken")
    Image.new("RGB", (8, 8)).save(data / "0" / "tiny.png")
    result = run_cli(str(work / "m.onnx"), "--data", str(data), "--target-flops", "0.8", "-o", str(work / "o.onnx"), *FAST)
    assert result.returncode == 0, result.stderr
    assert "skipped 1 unreadable" in result.stderr and "1 image(s) are smaller" in result.stderr


def test_external_data_models_are_written_with_external_data(work: Path) -> None:
    model = onnx.load(str(work / "m.onnx"))
    onnx.save_model(model, str(work / "ext.onnx"), save_as_external_data=True, location="ext.onnx.data",
                    size_threshold=0)
    result = run_cli(str(work / "ext.onnx"), "--data", str(SAMPLES / "digits"), "--target-flops", "0.8", *FAST)
    assert result.returncode == 0, result.stderr
    assert (work / "ext.pruned.onnx.data").is_file()
    onnx.checker.check_model(str(work / "ext.pruned.onnx"), full_check=True)


@pytest.mark.slow  # a real process and signal: run with --all (CI does)
def test_interrupt_leaves_no_partial_output(work: Path) -> None:
    out = work / "o.onnx"
    out.write_bytes(b"previous output")  # an existing output survives an interrupted run untouched
    process = subprocess.Popen(
        [sys.executable, "-m", "onnxprune_cli.main", str(work / "m.onnx"), "--data", str(SAMPLES / "digits"),
         "-o", str(out), "--epochs", "50", "--round-to", "1", "--no-bench"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    line = "start"
    while line and time.time() < deadline and not (": fine-tuning" in line or "final fine-tuning" in line):
        line = process.stderr.readline()  # a round's progress (slow runs), or the final fine-tuning's start
    assert line, "the run ended before any fine-tuning"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
    assert out.read_bytes() == b"previous output"
    assert not [p for p in work.iterdir() if p.name.startswith(".")]


def test_verbose_shows_the_traceback(work: Path) -> None:
    result = run_cli("-v", str(work / "nope.onnx"), "--data", str(SAMPLES / "digits"))
    assert result.returncode == 1 and "Traceback" in result.stderr


def test_a_run_that_loses_more_than_max_drop_writes_the_report_but_no_model(work: Path) -> None:
    import json

    result = run_cli(str(work / "m.onnx"), "--data", str(SAMPLES / "digits"), *FAST, "--target-flops", "0.2",
                  "--max-drop", "0.5")
    assert result.returncode == 1, result.stderr
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "more than --max-drop 0.5" in lines[0] and "Traceback" not in result.stderr
    assert not (work / "m.pruned.onnx").exists()
    report = json.loads((work / "m.pruned.report" / "report.json").read_text())
    drop = report["quality"]["drop"]
    assert drop["metric"] == "top1_agreement" and drop["points"] > 0.5 and not drop["within"]
    assert report["output"] is None
    assert not [p for p in work.iterdir() if p.name.startswith(".")], "a temporary file was left behind"
