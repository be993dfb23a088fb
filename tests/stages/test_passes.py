"""The stages as passes: what each needs is ensured before it (in the pipeline's own list), the
manager checks both at run time, checkpoints after each resumable pass and resumes where a
checkpoint left off."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest
from conftest import SAMPLES

from onnxprune.graph.load import load
from onnxprune.pipeline import PASSES
from onnxprune.report import LosslessCounts, RoundRecord
from onnxprune.stages.checkpoint import Checkpoint
from onnxprune.stages.context import StageClock
from onnxprune.stages.passes import Pass, PassManager, PassState, always

LOADED = load(SAMPLES / "digits_mobilenet.onnx")


def test_every_pass_of_the_pipeline_finds_what_it_needs_ensured_before_it() -> None:
    ensured: set[str] = set()
    for p in PASSES:
        assert set(p.requires) <= ensured, f"{p.name} needs {set(p.requires) - ensured}"
        if p.applies is always:  # a pass that may not run ensures nothing the others can count on
            ensured |= set(p.ensures)
    assert {"written", "quality", "final_groups", "max_error"} <= ensured  # what the report is built from


class Saves:
    """A checkpoint folder that remembers what it was asked to save."""

    def __init__(self) -> None:
        self.saved: list[tuple[str, int | None, str]] = []

    def save(self, pass_name, step, label, model, records, freed, reached=True, budget=None, blocks=None) -> None:
        self.saved.append((pass_name, step, label))


def _run() -> SimpleNamespace:
    return SimpleNamespace(checkpoints=Saves(), model=SimpleNamespace(work=LOADED), options=None)


def _view_pass(run, plan, state, steps):
    from onnxprune.torchview.view import TorchView
    return replace(state, view=TorchView.of(LOADED.model, LOADED.image), freed=LosslessCounts())


def _rounds(run, plan, state, steps):
    records = list(state.records)
    for r in range(steps.after + 1, 4):
        records.append(RoundRecord(r, 1, 1, 1.0, None, None, None, 0.0))
        steps.save(r, f"round {r}/3", replace(state, records=tuple(records)))
    return replace(state, records=tuple(records))


VIEW = Pass("view", _view_pass, ensures=("view", "freed"))
ROUNDS = Pass("rounds", _rounds, requires=("view",))
NOT_RESUMABLE = Pass("report", lambda run, plan, state, steps: replace(state, quality=None), resumable=False)


def test_the_manager_checkpoints_each_pass_and_each_step_a_pass_saves() -> None:
    run = _run()
    clock = StageClock()
    state = PassManager((VIEW, ROUNDS, NOT_RESUMABLE), run, None, clock).run_all()
    assert [r.round for r in state.records] == [1, 2, 3]
    assert run.checkpoints.saved == [("view", None, "view"), ("rounds", 1, "round 1/3"), ("rounds", 2, "round 2/3"),
                                     ("rounds", 3, "round 3/3"), ("rounds", None, "rounds")]
    assert list(clock.as_dict()) == ["view", "rounds", "report"]


def test_a_resumed_run_starts_inside_the_pass_a_checkpoint_stopped_in_or_after_the_one_it_finished() -> None:
    run = _run()
    done = (RoundRecord(1, 1, 1, 1.0, None, None, None, 0.0), RoundRecord(2, 1, 1, 1.0, None, None, None, 0.0))
    inside = Checkpoint("rounds", 2, "round 2/3", LOADED.model, done, LosslessCounts(), True)
    state = PassManager((VIEW, ROUNDS), run, None, StageClock()).run_all(inside)
    assert [r.round for r in state.records] == [1, 2, 3]  # round 3 alone ran
    assert [s[:2] for s in run.checkpoints.saved] == [("rounds", 3), ("rounds", None)]

    run = _run()
    finished = replace(inside, step=None, records=done + (RoundRecord(3, 1, 1, 1.0, None, None, None, 0.0),))
    state = PassManager((VIEW, ROUNDS, NOT_RESUMABLE), run, None, StageClock()).run_all(finished)
    assert len(state.records) == 3 and run.checkpoints.saved == []
    with pytest.raises(RuntimeError, match="does not run"):
        PassManager((VIEW,), run, None, StageClock()).run_all(finished)


def test_a_pass_that_lacks_what_it_needs_or_leaves_unset_what_it_ensures_is_named() -> None:
    with pytest.raises(RuntimeError, match="'rounds' needs view"):
        PassManager((ROUNDS,), _run(), None, StageClock()).run_all()
    forgets = Pass("forgets", lambda run, plan, state, steps: state, ensures=("quality",))
    with pytest.raises(RuntimeError, match="'forgets' left quality unset"):
        PassManager((forgets,), _run(), None, StageClock()).run_all()
    with pytest.raises(ValueError, match="no field of PassState"):
        Pass("typo", _rounds, requires=("veiw",))
    with pytest.raises(ValueError, match="share a name"):
        PassManager((VIEW, VIEW), _run(), None, StageClock())


def test_a_pass_that_does_not_apply_is_skipped_and_a_run_that_gave_up_is_not_checkpointed() -> None:
    run = _run()
    never = Pass("never", lambda run, plan, state, steps: 1 / 0, applies=lambda run, state: False)
    gives_up = Pass("gives up", lambda run, plan, state, steps: replace(state, stopped="hopeless"))
    state = PassManager((VIEW, never, gives_up), run, None, StageClock()).run_all()
    assert state.stopped == "hopeless" and [s[0] for s in run.checkpoints.saved] == ["view"]
    assert PassState().missing(("view", "records")) == ["view"]  # an empty tuple is set
