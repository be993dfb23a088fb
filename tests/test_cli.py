from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_run import run_cli
from conftest import SAMPLES

SAMPLE = SAMPLES / "digits_resnet.onnx"


def _process(*args: str) -> subprocess.CompletedProcess:
    """A real ``onnxprune`` process, where the exit status itself is what is tested."""
    return subprocess.run([sys.executable, "-m", "onnxprune_cli.main", *args], capture_output=True, text=True,
                          timeout=300)


def test_version_prints_the_package_version() -> None:
    from onnxprune import __version__

    result = _process("--version")
    assert result.returncode == 0 and __version__ in result.stdout


def test_analyze_json_prints_one_object_with_totals() -> None:
    result = run_cli("analyze", str(SAMPLE), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)  # nothing but JSON on stdout
    assert data["flops"] > 2 * data["macs"] * 0.99 and data["macs"] > 0 and data["params"] > 0
    assert data["image_input"]["height"] == 32
    assert len(data["top_nodes"]) == 10


def test_analyze_prints_a_readable_table() -> None:
    result = run_cli("analyze", str(SAMPLE))
    assert result.returncode == 0, result.stderr
    assert "FLOPs" in result.stdout and "Conv" in result.stdout and "costliest nodes" in result.stdout


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.onnx", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: (d / "empty.onnx").write_bytes(b"") and d / "empty.onnx" or d / "empty.onnx", "is empty"),
        (lambda d: (d / "t.onnx").write_text("not a model") and d / "t.onnx", "not a readable ONNX"),
    ],
)
def test_bad_model_path_is_one_line_on_stderr(tmp_path: Path, make, message: str) -> None:
    result = _process("analyze", str(make(tmp_path)))
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in result.stderr


def test_analyze_counts_a_free_size_model_at_a_size_it_names(tmp_path: Path) -> None:
    import onnx
    from graphs import GraphBuilder

    g = GraphBuilder(input_shape=("n", 3, "h", 48))  # a reader's free width
    onnx.save(g.build([g.conv(g.node("Relu", [g.conv("x", 3, 8)]), 8, 4)]), tmp_path / "free.onnx")
    result = run_cli("analyze", str(tmp_path / "free.onnx"), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["counted_at"] == {"batch": 1, "height": 224, "width": 48} and "224×48" in data["size_chosen"]
    assert "--input-size H W counts at another" in run_cli("analyze", str(tmp_path / "free.onnx")).stdout


def test_analyze_says_when_a_free_size_model_does_not_run_at_the_size_it_chose(tmp_path: Path) -> None:
    import numpy as np
    import onnx
    from graphs import GraphBuilder

    g = GraphBuilder(input_shape=("n", 3, "h", "w"))  # free in the file, but only 16×16 reshapes
    flat = g.node("Reshape", [g.conv("x", 3, 8), g.init(np.array([0, 8 * 16 * 16], np.int64))])
    onnx.save(g.build([flat]), tmp_path / "fixed_inside.onnx")
    result = _process("analyze", str(tmp_path / "fixed_inside.onnx"))
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "does not run at 224×224" in result.stderr and "pass --input-size H W" in result.stderr


def test_a_bare_onnxprune_prints_a_short_usage_not_an_error() -> None:
    result = _process()
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith("usage: onnxprune MODEL.onnx --data") and len(result.stdout.splitlines()) <= 4


def test_prune_help_shows_the_options_in_groups_with_the_common_ones_first() -> None:
    from onnxprune_cli.options import GROUPS

    result = run_cli("prune", "--help")
    assert result.returncode == 0, result.stderr
    headings = [line.rstrip(":") for line in result.stdout.splitlines() if line and not line[0].isspace()
                and line.endswith(":")]
    assert headings == [title for title, _ in GROUPS] + ["Other options"]
    first = result.stdout.split("Data and labels:")[0]
    for flag in ("--target-flops", "--target-latency", "--max-drop", "--labels imagefolder|FILE.csv", "--quantize"):
        assert flag in first, flag
    assert "[default: 0.15]" in result.stdout  # defaults are shown


def test_the_options_page_lists_every_option_of_the_help() -> None:
    from onnxprune_cli.main import prune

    page = (SAMPLES.parent / "docs" / "options.md").read_text()
    flags = [flag for p in prune.params for flag in p.opts if flag.startswith("-") and flag not in ("-h", "--help")]
    assert flags and [f for f in flags if f"`{f}`" not in page] == []


@pytest.mark.parametrize("args, message", [
    (["missing.onnx", "--data", str(SAMPLES / "digits")], "missing.onnx: no such file"),
    ([str(SAMPLE), "--data", "missing/"], "--data missing: no such file or folder"),
    ([str(SAMPLE), "--data", str(SAMPLES / "digits"), "--labels", "missing.csv"], "--labels missing.csv: no such"),
    ([str(SAMPLE), "--data", str(SAMPLES / "digits"), "--val-data", "missing/"], "--val-data missing: no such"),
    ([str(SAMPLE), "--data", str(SAMPLES / "digits"), "--unlabeled", "missing/"], "--unlabeled missing: no such"),
    ([str(SAMPLE), "--data", str(SAMPLES / "digits"), "-o", "missing/out.onnx"], "folder missing does not exist"),
    ([str(SAMPLE), "--data", str(SAMPLE)], "give a folder of images or an .npy/.npz file"),
])
def test_wrong_paths_are_refused_before_onnx_or_torch_is_imported(args: list[str], message: str) -> None:
    """What makes these answer in a fraction of a second (benchmarks/cli_errors.py times them)."""
    probe = ("import json, sys\nfrom onnxprune_cli.main import main\n"
             f"sys.argv = ['onnxprune', *{args!r}]\n"
             "try:\n    main()\nexcept SystemExit as exit_:\n    code = exit_.code\n"
             "print(json.dumps([code, sorted(m for m in ('onnx', 'torch', 'onnxruntime') if m in sys.modules)]))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    code, heavy = json.loads(result.stdout.strip().splitlines()[-1])
    assert code == 1 and heavy == [], (code, heavy, result.stderr)
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_unknown_option_is_a_usage_error() -> None:
    result = run_cli("analyze", str(SAMPLE), "--no-such-option")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr


def test_prune_is_the_default_command_and_writes_model_and_report(tmp_path: Path) -> None:
    import hashlib
    import shutil

    model = tmp_path / "m.onnx"
    shutil.copy(SAMPLES / "digits_vgg.onnx", model)
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    result = run_cli(str(model), "--data", str(SAMPLES / "digits"), "--target-flops", "0.5", "--labels",
                  "imagefolder", "--rounds", "1", "--round-steps", "1", "--epochs", "0.2", "--round-to", "1",
                  "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["flops"]["after"] <= 0.5 * summary["flops"]["before"]
    assert summary["data"]["kind"] == "images" and summary["data"]["train"] + summary["data"]["validation"] > 0
    assert summary["runtime"]["torch_device"] == "cpu" and summary["runtime"]["processes"] == 1
    assert {"prepare", "rounds", "final fine-tuning", "verify"} <= set(summary["stage_times_s"])
    assert (tmp_path / "m.pruned.onnx").is_file()
    folder = tmp_path / "m.pruned.report"
    report = json.loads((folder / "report.json").read_text())
    import jsonschema

    schema = json.loads((SAMPLES.parent / "docs" / "report.schema.json").read_text())
    jsonschema.validate(report, schema)
    assert {"report.md", "widths.png", "trajectory.png", "latency.png"} <= {p.name for p in folder.iterdir()}
    assert "FLOPs" in (folder / "report.md").read_text()
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


@pytest.mark.parametrize("args, message, code", [
    (["--target-flops", "1.5"], "must be in (0, 1]", 2),
    (["--target-flops", "0"], "must be in (0, 1]", 2),
    (["--criterion", "magic"], "must be one of", 2),
    (["--data", "/no/such/dir"], "no such file or folder", 1),
    (["-o", str(SAMPLE)], "is the input model", 1),
])
def test_bad_prune_arguments_fail_cleanly(tmp_path: Path, args: list[str], message: str, code: int) -> None:
    base = [str(SAMPLE), "--data", str(SAMPLES / "digits"), "-o", str(tmp_path / "out.onnx")]
    result = run_cli(*base, *args)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out.onnx").exists()
