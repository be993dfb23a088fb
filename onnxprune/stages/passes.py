"""The stages ``prune`` runs, as passes over one state: each pass names the fields of the state it
needs (``requires``) and those it leaves set (``ensures``); ``PassManager`` runs them in order,
checks both (a missing one is a bug, named with the pass), times each, checkpoints after each
pass that can be resumed from and, with --resume, starts after the last one a checkpoint holds.

A new stage is a function ``(run, plan, state, steps) -> state`` and a ``Pass`` naming it, in its
own module; ``pipeline.PASSES`` lists it where it runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import onnx

from ..graph.groups import GroupAnalysis
from ..report import Budget, LosslessCounts, Quality, Recovery, RoundRecord
from ..torchview.distributed import on_main
from ..torchview.view import TorchView
from .context import Run, StageClock
from .planner import WidthPlan

if TYPE_CHECKING:  # the stages' own modules hold their passes, and so import this one
    from .checkpoint import Checkpoint

__all__ = ["Pass", "PassState", "PassManager", "Steps", "always"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassState:
    """What the passes hand on; a field is None (or empty) until a pass ensures it."""

    # before the rounds
    start: onnx.ModelProto | None = None  # the work model the lossless pass starts from (blocks removed)
    start_groups: GroupAnalysis | None = None  # its channel groups
    blocks: dict | None = None  # what --structure removed whole (depth.DepthResult.as_dict)
    freed: LosslessCounts | None = None  # what the lossless pass removed and folded
    # the pruning
    view: TorchView | None = None  # the model so far, trainable
    records: tuple[RoundRecord, ...] = ()
    reached: bool = True  # False: the rounds stopped short of the target
    budget: Budget | None = None  # where a --max-drop goal's rounds stopped and why
    stopped: str | None = None  # why the rounds gave up (judged and reported as they stand)
    recovery: Recovery | None = None  # how the final fine-tuning went, where it trained until stalled
    # what is written and how it measures
    final: onnx.ModelProto | None = None  # the pruned model, inserted BatchNorm folded back
    final_groups: GroupAnalysis | None = None
    written: onnx.ModelProto | None = None  # ``final`` with the user's input signature
    max_error: float | None = None  # onnxruntime against the torch view, on the held-out images
    quality: Quality | None = None  # of ``final`` on the held-out share, with intervals
    int8: onnx.ModelProto | None = None  # --quantize: ``final`` in INT8, verified
    int8_quality: Quality | None = None
    timing: dict[str, Any] | None = None  # the models timed side by side (--bench, --target-latency)

    def missing(self, names: tuple[str, ...]) -> list[str]:
        return [n for n in names if getattr(self, n) is None]


STATE_FIELDS = frozenset(f.name for f in fields(PassState))


@dataclass(frozen=True)
class Steps:
    """A pass's place in its own steps: those up to ``after`` were done by the run a checkpoint
    continues; ``save(step, label, state)`` records one more (rounds save after each)."""

    after: int
    save: Callable[[int, str, PassState], None]

    def each_round(self, state: PassState) -> Callable[[int, str, TorchView, list[RoundRecord], bool], None]:
        """The callback the rounds call after each round (``rounds.prune_in_rounds``'s ``saved``):
        ``state`` with that round's view, records and reach, saved as step ``r``."""
        def saved(r: int, label: str, view: TorchView, records: list[RoundRecord], reached: bool) -> None:
            self.save(r, label, replace(state, view=view, records=tuple(records), reached=reached))

        return saved


def always(run: Run, state: PassState) -> bool:  # noqa: ARG001
    return True


@dataclass(frozen=True)
class Pass:
    name: str  # the stage's name in the clock, the log and the checkpoint
    run: Callable[[Run, WidthPlan, PassState, Steps], PassState]
    requires: tuple[str, ...] = ()
    ensures: tuple[str, ...] = ()
    applies: Callable[[Run, PassState], bool] = always
    resumable: bool = True  # checkpointed after it runs, so --resume can start after it
    on_main: bool = False  # under torchrun, rank 0 runs it and the others receive the state

    def __post_init__(self) -> None:
        unknown = set(self.requires + self.ensures) - STATE_FIELDS
        if unknown:
            raise ValueError(f"pass {self.name!r} names no field of PassState: {sorted(unknown)}")


class PassManager:
    """Runs the passes in order over one ``PassState``; see the module's docstring."""

    def __init__(self, passes: tuple[Pass, ...], run: Run, plan: WidthPlan, clock: StageClock) -> None:
        names = [p.name for p in passes]
        if len(set(names)) != len(names):
            raise ValueError(f"two passes share a name: {names}")
        self.passes, self.run, self.plan, self.clock = passes, run, plan, clock

    def start(self, resumed: Checkpoint | None) -> tuple[PassState, int, int]:
        """The state to begin with, the index of the first pass to run and the steps of it done."""
        if resumed is None:
            return PassState(), 0, 0
        names = [p.name for p in self.passes]
        if resumed.pass_name not in names:
            raise RuntimeError(f"a checkpoint names the pass {resumed.pass_name!r}, which this version does not run")
        image = self.run.model.work.image
        state = PassState(view=TorchView.of(resumed.model, image), freed=resumed.freed, records=resumed.records,
                          reached=resumed.reached, budget=resumed.budget, blocks=resumed.blocks)
        at = names.index(resumed.pass_name)
        if resumed.step is None:  # that pass finished
            return state, at + 1, 0
        return state, at, resumed.step

    def run_all(self, resumed: Checkpoint | None = None) -> PassState:
        """Every pass that applies, from where ``resumed`` left off; the state they leave."""
        state, first, after = self.start(resumed)
        for i, p in enumerate(self.passes[first:], first):
            if not p.applies(self.run, state):
                continue
            missing = state.missing(p.requires)
            if missing:
                raise RuntimeError(f"the pass {p.name!r} needs {', '.join(missing)}, which no pass before it set")
            steps = Steps(after if i == first else 0, self._saver(p))
            with self.clock(p.name):
                if p.on_main:
                    state = on_main(lambda: p.run(self.run, self.plan, state, steps))
                else:
                    state = p.run(self.run, self.plan, state, steps)
            missing = state.missing(p.ensures)
            if missing:
                raise RuntimeError(f"the pass {p.name!r} left {', '.join(missing)} unset, which it ensures")
            if p.resumable and state.stopped is None:  # a run that gave up would only give up again
                self._save(p.name, None, p.name, state)
        return state

    def _saver(self, p: Pass) -> Callable[[int, str, PassState], None]:
        return lambda step, label, state: self._save(p.name, step, label, state)

    def _save(self, pass_name: str, step: int | None, label: str, state: PassState) -> None:
        if state.view is None:  # nothing worth resuming from before the torch view exists
            return
        self.run.checkpoints.save(pass_name, step, label, state.view.model, list(state.records), state.freed,
                                  state.reached, state.budget, state.blocks)
