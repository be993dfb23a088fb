"""Deployment: --max-drop as the goal, latency tables profiled for another device, prune → INT8."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import SAMPLES

import onnxprune.budget as budget
import onnxprune.pipeline as pipeline
import onnxprune.rounds as rounds
from onnxprune import prune
from onnxprune.device_table import FORMAT, VERSION, profile_device
from onnxprune.errors import OnnxpruneError
from onnxprune.flops import count
from onnxprune.load import load
from onnxprune.metrics import QualityDrop
from onnxprune.options import InvalidOption, resolve
from onnxprune.report import render_markdown
from onnxprune.runtime import run_model
from onnxprune.shapes import probe_shapes

QUICK = dict(round_steps=1, epochs=0.1, calibration_images=32, round_to=1, bench=False)


def _flops(model: onnx.ModelProto) -> int:
    loaded = load(model)
    return count(loaded.model, probe_shapes(loaded.model, loaded.image)).flops


def test_max_drop_alone_is_the_goal_and_settles_the_rest() -> None:
    assert resolve(None, {"max_drop": 1.0}).budget_goal
    plain = resolve(None, {})
    assert (plain.target_flops, plain.max_drop, plain.budget_goal) == (0.3, 3.0, False)
    assert resolve(None, {"target_latency": 0.5, "max_drop": 1.0}).target_flops == 1.0
    with pytest.raises(InvalidOption, match="--minimize applies when --max-drop alone"):
        resolve(0.5, {"max_drop": 1.0, "minimize": "latency"})
    with pytest.raises(InvalidOption, match="--schedule sfp"):
        resolve(None, {"max_drop": 1.0, "schedule": "sfp"})


def test_the_budget_keeps_the_last_round_within_it_after_retrying_the_one_that_breaks_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Quality is faked by size (no loss above 45 % of the FLOPs, 50 points below) so that the
    stop is known; the rounds, the retry and the kept model are the real ones."""
    base = _flops(SAMPLES / "digits_vgg.onnx")
    judged: list[float] = []

    def fake_quality(run, model):
        share = _flops(model) / base
        judged.append(share)
        points = 0.0 if share > 0.45 else 50.0
        return {"top1_agreement": 1 - points / 100}, QualityDrop("top1_agreement", points, run.options.max_drop)

    for module in (rounds, budget, pipeline):
        monkeypatch.setattr(module, "held_out_quality", fake_quality)
    result = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", max_drop=20, **QUICK)
    report = result.report
    kept = [r for r in report.trajectory[1:] if r.kept]
    broken = report.trajectory[-1]
    assert not broken.kept and broken.extra_steps >= 2 and broken.flops_fraction <= 0.45
    assert report.budget.kept_round == kept[-1].round == broken.round - 1
    assert report.budget.stopped_after == broken.round
    assert f"round {broken.round} lost 50.0 points" in report.budget.reason
    assert report.flops.after == kept[-1].flops == _flops(result.model) and report.flops.fraction > 0.45
    assert len(kept) >= 2  # several rounds of BUDGET_STEP each, not one jump
    assert sum(share <= 0.45 for share in judged) == 2  # the breaking round, judged again after the retry
    page = render_markdown(report.as_dict())
    assert f"stopped after round {broken.round}, keeping round {broken.round - 1}" in page
    assert f"not kept: beyond the budget (after {broken.extra_steps} more steps)" in page
    assert "## Stages" in page and "smallest by flops within --max-drop 20" in page


def test_with_no_budget_to_break_the_rounds_go_on_to_the_floors_or_the_round_cap() -> None:
    report = prune(SAMPLES / "digits_mobilenet.onnx", SAMPLES / "digits", max_drop=100, rounds=3, **QUICK).report
    assert report.budget.kept_round == 3 and "round limit (3" in report.budget.reason
    fractions = [r.flops_fraction for r in report.trajectory]
    assert all(b < a for a, b in zip(fractions, fractions[1:]))
    assert fractions[-1] == pytest.approx(0.85 ** 3, abs=0.08)
    assert all(r.quality_drop is not None for r in report.trajectory)


def test_minimize_latency_cuts_the_predicted_latency_each_round() -> None:
    report = prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", max_drop=100, minimize="latency", rounds=2,
                   **{**QUICK, "round_to": "auto"}).report
    predicted = [r.latency_fraction_predicted for r in report.trajectory]
    assert predicted[0] == 1.0 and predicted[1] <= 0.86 and predicted[2] < predicted[1]
    assert report.budget.minimize == "latency"


def test_int8_after_pruning_is_checked_benchmarked_and_keeps_the_signature() -> None:
    result = prune(SAMPLES / "digits_vgg.default.onnx", SAMPLES / "digits", 0.5, labels="imagefolder", quantize="int8",
                   **{**QUICK, "bench": True, "bench_runs": 3, "max_drop": 100})
    names = [s.name for s in result.report.stages]
    assert names == ["original", "pruned", "pruned + INT8"]
    original, pruned, int8 = result.report.stages
    assert int8.size_bytes < 0.4 * pruned.size_bytes and pruned.size_bytes < original.size_bytes
    assert int8.flops == pruned.flops < original.flops
    assert [t["name"] for t in result.report.latency["timings"]] == names
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in result.model.graph.node}
    assert result.report.quality.after == int8.quality  # the report's quality is the delivered model's
    dims = result.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1  # the file's fixed batch, as given
    out = run_model(result.model, {"image": np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert out.shape == (1, 10)


def test_target_one_quantizes_without_pruning_or_fine_tuning() -> None:
    result = prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", 1.0, labels="imagefolder", quantize="int8",
                   **{**QUICK, "epochs": 5.0})
    assert [s.name for s in result.report.stages] == ["original", "INT8"]
    assert "final fine-tuning" not in result.report.stage_times_s
    assert result.report.quality.drop.points <= 3


def test_a_profiled_table_gives_the_same_widths_as_measuring_here(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONNXPRUNE_CACHE_DIR", str(tmp_path / "cache"))
    model = SAMPLES / "digits_resnet.default.onnx"  # BatchNorm folded: the run puts it back, the profile too
    table = tmp_path / "device.json"
    summary = profile_device([model], table, "cpu")
    content = json.loads(table.read_text())
    assert (content["format"], content["version"]) == (FORMAT, VERSION)
    assert content["measured_on"]["threads"] == summary["threads"] and summary["layers"] >= 5
    assert {e["kind"] for e in content["entries"].values()} == {"granularity", "layer", "model"}
    # the tables steer which channels go (the latency each saves per FLOP); a latency target
    # would add a correction measured here, which a table from another device must not have
    settings = dict(QUICK, round_to="auto", rounds=2, max_drop=100)
    from_table = prune(model, SAMPLES / "digits", 0.4, **settings, latency_table=str(table)).report
    measured = prune(model, SAMPLES / "digits", 0.4, **settings).report
    assert from_table.widths.after == measured.widths.after
    assert from_table.hardware_aware.table == str(table) and measured.hardware_aware.table is None
    assert from_table.hardware_aware.predicted_fraction == measured.hardware_aware.predicted_fraction
    # and the table is what decides: another device where the first convs are slow prunes elsewhere
    layers = [e for e in content["entries"].values() if e["kind"] == "layer"]
    for entry in layers[:3]:
        entry["value"] = [50 * ms for ms in entry["value"]]
    (tmp_path / "other.json").write_text(json.dumps(content))
    other = prune(model, SAMPLES / "digits", 0.4, **settings, latency_table=str(tmp_path / "other.json")).report
    assert other.widths.after != measured.widths.after


def test_a_table_that_does_not_cover_the_model_is_refused_with_one_line(tmp_path: Path) -> None:
    table = tmp_path / "vgg.json"
    profile_device([SAMPLES / "digits_vgg.onnx"], table, "cpu", threads=1)
    cli = [sys.executable, "-m", "onnxprune", str(SAMPLES / "digits_resnet.onnx"), "--data", str(SAMPLES / "digits"),
           "-o", str(tmp_path / "out.onnx"), "--latency-table", str(table)]
    done = subprocess.run(cli, capture_output=True, text=True)
    assert done.returncode == 1 and not (tmp_path / "out.onnx").exists()
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("onnxprune: error: --latency-table") and "has no measurement of Conv" in last
    assert "profile-device" in last and "Traceback" not in done.stderr
    stale = json.loads(table.read_text()) | {"version": VERSION + 1}
    (tmp_path / "new.json").write_text(json.dumps(stale))
    with pytest.raises(OnnxpruneError, match="version 2 of the format"):
        rounds.TableFile(tmp_path / "new.json")
    (tmp_path / "junk.json").write_text("{}")
    with pytest.raises(OnnxpruneError, match="not a latency table written by onnxprune"):
        rounds.TableFile(tmp_path / "junk.json")


def test_profile_device_on_the_command_line(tmp_path: Path) -> None:
    cli = [sys.executable, "-m", "onnxprune"]
    done = subprocess.run([*cli, "profile-device", str(SAMPLES / "digits_vgg.onnx"), "--threads", "1", "--out",
                           str(tmp_path / "dev.json"), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["threads"] == 1 and summary["layers"] >= 3 and (tmp_path / "dev.json").is_file()
    missing = subprocess.run([*cli, "profile-device", str(SAMPLES / "digits_vgg.onnx"), "--out",
                              str(tmp_path / "no" / "dev.json")], capture_output=True, text=True)
    assert missing.returncode == 1 and missing.stderr.strip().splitlines() == [
        f"onnxprune: error: --out {tmp_path / 'no' / 'dev.json'}: folder {tmp_path / 'no'} does not exist"]
    absent = subprocess.run([*cli, str(SAMPLES / "digits_vgg.onnx"), "--data", str(SAMPLES / "digits"),
                             "--latency-table", str(tmp_path / "absent.json")], capture_output=True, text=True)
    assert absent.returncode == 2 and "--latency-table" in absent.stderr and "no such file" in absent.stderr
    assert len(absent.stderr.strip().splitlines()) == 1
