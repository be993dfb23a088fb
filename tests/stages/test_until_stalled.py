"""The final fine-tuning goes on while the held-out loss improves, keeps its best epoch and says why
it stopped; the figure it reports comes from held-out images that did not choose the stop."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SAMPLES

import onnxprune.stages.recover as recover
from onnxprune import prune
from onnxprune.torchview.finetune import TrainSettings


class _ScriptedView:
    """A stand-in for the torch view: each epoch of training makes the next model of the script."""

    def __init__(self) -> None:
        self.model, self.image, self.analysis = "epoch 0", None, None
        self.rates: list[float] = []

    def finetune(self, data, teacher, steps, settings, seed, progress=None):
        self.rates.append(settings.lr)
        self.model = f"epoch {len(self.rates)}"
        return [0.0] * steps


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr(recover.TorchView, "of", classmethod(lambda cls, model, image, analysis=None: model))


def test_training_stops_after_the_patience_and_keeps_the_best_epoch(scripted) -> None:
    # better every epoch up to the 12th, then a gain too small to count (0.5 %), then worse
    def loss(model: str) -> float:
        k = int(model.split()[1])
        return 1 / (1 + k) if k <= 12 else {13: 0.999 / 13, 14: 0.1, 15: 0.2}.get(k, 0.3)

    view = _ScriptedView()
    kept, record = recover.train_until_stalled(view, None, None, 10, TrainSettings(lr=1e-3), (0,), loss, 0, budget_s=1e6)
    assert (recover.PATIENCE, recover.LR_PATIENCE) == (8, 2)
    assert record.epochs == 20 and record.kept_epoch == 12 and kept == "epoch 12"
    assert record.stopped == "no better held-out loss in 8 epochs"
    assert record.selection_loss[:13] == tuple(1 / (1 + k) for k in range(13)) and record.steps == 200
    # halved after every second epoch in a row that did not improve
    assert view.rates == [1e-3] * 14 + [5e-4] * 2 + [2.5e-4] * 2 + [1.25e-4] * 2


def test_training_never_stops_before_the_fixed_schedule_would_have(scripted) -> None:
    view = _ScriptedView()
    _, record = recover.train_until_stalled(view, None, None, 10, TrainSettings(), (0,), lambda model: 1.0, 0,
                                            budget_s=1e6)
    assert record.epochs == recover.MIN_EPOCHS and record.kept_epoch == 0


def test_training_stops_within_the_time_budget(scripted, monkeypatch) -> None:
    clock = iter(range(0, 1000, 10))  # every epoch takes 10 s
    monkeypatch.setattr(recover.time, "perf_counter", lambda: float(next(clock)))
    view = _ScriptedView()
    _, record = recover.train_until_stalled(view, None, None, 10, TrainSettings(), (0,),
                                            lambda model: 1.0 / (1 + int(model.split()[1])), 0, budget_s=35)
    assert record.stopped == "the time budget of 35 s" and record.epochs == 3  # the budget wins over the minimum


def test_by_default_training_stops_after_a_count_of_epochs_however_long_they_take(scripted, monkeypatch) -> None:
    improving = lambda model: 1.0 / (1 + int(model.split()[1]))  # noqa: E731
    stops = []
    for seconds in (1, 7, 30):  # a quiet machine, a busy one: the same epochs
        clock = iter(range(0, 10 ** 6, seconds))
        monkeypatch.setattr(recover.time, "perf_counter", lambda: float(next(clock)))
        _, record = recover.train_until_stalled(_ScriptedView(), None, None, 10, TrainSettings(), (0,), improving, 0,
                                                budget_s=None)
        stops.append((record.epochs, record.stopped))
    assert stops == [(recover.BUDGET_EPOCHS, "50 epochs, the default budget (--time-budget sets seconds)")] * 3
    clock = iter(range(0, 10 ** 6, 600))  # ten minutes an epoch: the half hour comes before the 50 epochs
    monkeypatch.setattr(recover.time, "perf_counter", lambda: float(next(clock)))
    _, record = recover.train_until_stalled(_ScriptedView(), None, None, 10, TrainSettings(), (0,), improving, 0,
                                            budget_s=None)
    assert record.epochs == 3 and record.stopped == "the time budget of 1800 s"  # a fourth would overrun it


def test_a_run_reports_its_recovery_and_judges_on_images_that_did_not_choose() -> None:
    result = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", 0.6, labels="imagefolder", rounds=1,
                   round_steps=1, calibration_images=32, round_to=1, bench=False, max_drop=100, time_budget=5)
    recovery, quality = result.report.recovery, result.report.quality
    assert recovery is not None and recovery.epochs >= 1 and recovery.selection_images > 0
    assert recovery.selection_loss[recovery.kept_epoch] == min(recovery.selection_loss)
    # the held-out set is split: the stop is chosen on one half, the figure reported on the other
    assert recovery.selection_images + quality.validation_inputs == result.report.data.validation
    assert "recovery" in result.report.as_dict() and np.isfinite(recovery.seconds)


def test_with_a_few_dozen_images_an_epoch_is_still_a_score_of_steps() -> None:
    """40 images are two steps of 32: counted in such epochs, patience and the rate's halving
    ended training within twenty steps; an epoch is never shorter than OPEN_ENDED_EPOCH_STEPS."""
    from onnxprune.data.sources import load_data
    from onnxprune.graph.load import load

    images = np.concatenate(list(load_data(SAMPLES / "digits", load(SAMPLES / "digits_vgg.onnx").image).batches(40)))
    result = prune(SAMPLES / "digits_vgg.onnx", images[:40], 0.6, rounds=1, round_steps=1, calibration_images=16,
                   round_to=1, bench=False, max_drop=100, time_budget=4)
    recovery = result.report.recovery
    assert recovery is not None and recovery.epochs >= 1
    assert recovery.steps == recovery.epochs * recover.OPEN_ENDED_EPOCH_STEPS == recovery.epochs * 20
