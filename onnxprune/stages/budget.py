"""--max-drop as the goal: prune round by round while the held-out quality stays within the
budget, and keep the last model that did — the smallest by FLOPs, or by predicted latency.

Each round removes ``planner.BUDGET_STEP`` of what is left (FLOPs, or predicted latency with
``--minimize latency``; channels ranked as a FLOPs target ranks them, by saliency and their FLOPs
weighted by how slow they are), fine-tunes as a target run's rounds do, and measures the held-out
quality by the measure --max-drop limits. A round beyond the budget is not judged on its few
fine-tuning steps: it gets more (``retry_steps``) and is measured again. Only if it is still
beyond does the run stop, keeping the round before. So which rounds recover with more
fine-tuning is measured, not guessed, and each retry costs one more short fine-tuning.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from ..report import Budget, RoundRecord
from ..torchview.finetune import epoch_steps
from ..torchview.view import TorchView
from .context import Run
from .passes import Pass, PassState, Steps
from .planner import WidthPlan
from .rounds import prune_round

__all__ = ["BUDGET_ROUNDS", "prune_within_budget", "retry_steps", "MAX_ROUNDS"]

log = logging.getLogger(__name__)

MAX_ROUNDS = 40  # unless --rounds caps them; 0.85⁴⁰ ≈ 0.15 %: the floors stop a run long before


def retry_steps(run: Run) -> int:
    """More fine-tuning for a round beyond the budget: an epoch, between 2 and 5 rounds' worth."""
    epoch = epoch_steps(len(run.data.train), run.training.settings.batch_size)
    return max(2 * run.training.round_steps, min(epoch, 5 * run.training.round_steps), 1)


def prune_within_budget(run: Run, plan: WidthPlan, view: TorchView, records: list[RoundRecord] | None = None,
                        after: int = 0,
                        saved: Callable[[int, str, TorchView, list[RoundRecord], bool], None] | None = None,
                        ) -> tuple[TorchView, list[RoundRecord], Budget]:
    """Rounds until the budget breaks (after a retry), the floors are reached or ``MAX_ROUNDS``;
    returns the last model within the budget, the records (the breaking round too, not kept) and
    where and why the rounds stopped. Rounds up to ``after`` were done by a resumed run."""
    o = run.options
    minimize = o.minimize or "flops"
    records = list(records or [])
    kept = after
    limit = o.rounds or MAX_ROUNDS
    reason = f"the round limit ({limit}, --rounds) was reached"
    for r in range(after + 1, limit + 1):
        analysis = view.groups()
        goal, goal_ms = plan.next_budget_goal(analysis, minimize)
        label = f"round {r}"
        # ranked by FLOPs weighted by their slowness in both modes: ranked by milliseconds alone,
        # the latency rounds broke the budget sooner and kept slower models on all three samples
        # (benchmarks/results/budget-2026-11-30-ranked-by-ms.txt against budget.txt)
        candidate, record, reached = prune_round(run, plan, view, analysis, r, label, goal, goal_ms, soft=False,
                                                 per_flop=True)
        if record.flops >= analysis.cost.flops:
            reason = f"every prunable group was at its floor after round {r - 1}"
            break
        if (record.quality_drop or 0.0) > o.drop_limit:
            extra = retry_steps(run)
            log.info("%s: %.1f points lost, beyond --max-drop %g: fine-tuning %d more steps before judging it",
                     label, record.quality_drop, o.max_drop, extra)
            total = extra * run.training.settings.batch_size
            candidate.finetune(run.data.train, run.teacher, extra, run.training.settings, (o.seed, r, 1),
                               lambda images: run.progress(f"{label}: more fine-tuning", images, total))
            quality = run.judge.quality(candidate.model, judging=True)
            record = replace(record, agreement=quality.after.get("top1_agreement"), quality_drop=quality.drop.points,
                             extra_steps=extra)
        if (record.quality_drop or 0.0) > o.drop_limit:
            records.append(replace(record, kept=False))
            reason = (f"round {r} lost {record.quality_drop:.1f} points of {run.judge.metric.replace('_', ' ')}, "
                      f"beyond --max-drop {o.max_drop:g}, even after {record.extra_steps} more fine-tuning steps")
            break
        view, kept = candidate, r
        records.append(record)
        if saved:
            saved(r, label, view, records, True)
        if not reached:
            reason = f"every prunable group reached its floor in round {r}"
            break
    kept_text = f"round {kept}" if kept else "the original (no round stayed within the budget)"
    log.info("budget: stopped after round %d, keeping %s: %s", records[-1].round if records else 0, kept_text, reason)
    budget = Budget(run.judge.metric.replace("_", " "), o.drop_limit, minimize, kept,
                    records[-1].round if records else 0, reason)
    return view, records, budget


def _budget_pass(run: Run, plan: WidthPlan, state: PassState, steps: Steps) -> PassState:
    assert state.view is not None  # (required)
    view, records, budget = prune_within_budget(run, plan, state.view, list(state.records), steps.after,
                                                steps.each_round(state))
    return replace(state, view=view, records=tuple(records), budget=budget)


def _to_the_budget(run: Run, state: PassState) -> bool:
    return run.options.budget_goal and state.reached


BUDGET_ROUNDS = Pass("rounds within the budget", _budget_pass, requires=("view",), ensures=("view", "budget"),
                     applies=_to_the_budget)
