"""The report: a typed object whose JSON form follows docs/report.schema.json and whose
renderings say what the run did."""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import SAMPLES

from onnxprune import prune
from onnxprune.render import render_markdown, render_plots, render_summary
from onnxprune.report import Report

SCHEMA = json.loads((SAMPLES.parent / "docs" / "report.schema.json").read_text())


@pytest.fixture(scope="module")
def report() -> Report:
    return prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.5, labels="imagefolder", rounds=1, round_steps=1,
                 epochs=0.1, calibration_images=32, round_to=1, bench=False, max_drop=100).report


def test_the_json_form_follows_the_schema_and_round_trips(report: Report) -> None:
    data = report.written_to("out.onnx", "out.report").as_dict()
    jsonschema.validate(data, SCHEMA)
    assert json.loads(json.dumps(data)) == data
    assert data["flops"]["after"] == report.flops.after and data["quality"]["drop"]["within"] is True
    assert [row["round"] for row in data["trajectory"]] == [0, 1]


def test_the_typed_report_agrees_with_itself(report: Report) -> None:
    assert report.flops.fraction == pytest.approx(report.flops.after / report.flops.before)
    assert report.flops.after <= report.flops.target
    assert report.trajectory[-1].flops == report.flops.after
    assert sum(report.widths.after.values()) < sum(report.widths.before.values())


def test_markdown_summary_and_plots_show_the_numbers(report: Report) -> None:
    data = report.written_to("out.onnx", "out.report").as_dict()
    markdown, summary = render_markdown(data), render_summary(data)
    kept = f"{report.flops.fraction:.1%}"
    assert kept in markdown and kept in summary
    assert f"{report.quality.after['accuracy']:.2%}" in summary
    assert set(render_plots(data)) == {"widths.png", "trajectory.png"}  # no latency plot without timing
