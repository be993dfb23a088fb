"""--max-drop as the goal (budget.py): rounds while quality holds, the retry, the stop."""

from __future__ import annotations

import onnx
import pytest
from conftest import SAMPLES

from onnxprune import prune
from onnxprune.graph.flops import count
from onnxprune.graph.load import load
from onnxprune.graph.shapes import probe_shapes
from onnxprune.measure.metrics import QualityDrop
from onnxprune.options import InvalidOption, resolve
from onnxprune.render import render_markdown
from onnxprune.report import Quality
from onnxprune.stages.judging import Judge

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

    def fake_quality(judge, model, intervals=False, judging=False):
        share = 1.0 if model is None else _flops(model) / base
        judged.append(share)
        points = 0.0 if share > 0.45 else 50.0
        after = {"top1_agreement": 1 - points / 100, "cosine": 1.0}
        return Quality({"top1_agreement": 1.0, "cosine": 1.0}, after, 1,
                       QualityDrop("top1_agreement", points, judge.drop_limit))

    monkeypatch.setattr(Judge, "quality", fake_quality)
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


@pytest.mark.slow  # latency tables are timed: run with --all (CI does)
def test_minimize_latency_cuts_the_predicted_latency_each_round() -> None:
    report = prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", max_drop=100, minimize="latency", rounds=2,
                   **{**QUICK, "round_to": "auto"}).report
    predicted = [r.latency_fraction_predicted for r in report.trajectory]
    assert predicted[0] == 1.0 and predicted[1] <= 0.86 and predicted[2] < predicted[1]
    assert report.budget.minimize == "latency"


@pytest.mark.slow  # two prunings: run with --all (CI does)
def test_a_resumed_budget_run_keeps_where_it_stopped_and_why(tmp_path) -> None:
    settings = dict(QUICK, max_drop=100, rounds=2, checkpoint_dir=str(tmp_path / "checkpoint"))
    first = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", **settings)
    again = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", **settings, resume=True)
    assert again.report.resumed_after == "final fine-tuning"
    assert again.report.budget == first.report.budget and again.report.budget.kept_round == 2
    assert again.model.SerializeToString() == first.model.SerializeToString()


def test_rounds_are_chosen_on_half_the_held_out_images_and_the_kept_model_reported_on_the_others() -> None:
    report = prune(SAMPLES / "digits_mobilenet.onnx", SAMPLES / "digits", max_drop=100, rounds=1, **QUICK).report
    assert report.data.validation >= 20
    assert report.quality.validation_inputs == report.data.validation - report.data.validation // 2
