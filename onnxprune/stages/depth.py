"""Whole residual blocks removed before any channel (``--structure``): each removable block is
scored by what removing it alone costs — the fine-tuning loss against the original's outputs on
calibration images, before any fine-tuning — per millisecond it saves by the run's layer latency
tables (per FLOP where the run has none); the cheapest go first, until they have removed their
share of what the target asks to remove (FLOPs, or predicted latency under --target-latency). The
channel rounds then prune what is left to the target, and their fine-tuning recovers both.

A block that costs most per FLOP is the one whose branch the network leans on; one that costs
least adds a small correction to its skip (PRACTISE, Wang & Wu 2023, chooses blocks by how well
the rest recovers without them; this is the cheap half of that: how far the outputs move).

Blocks go only where they move the outputs no more than channels would for the same FLOPs: the
chosen blocks' loss is compared with the loss of removing as many FLOPs by channels (the run's
criterion and selection, one cut, neither fine-tuned), dropping the last-ranked block until the
blocks win or none is left. A small network with a few large blocks (the MobileNet character
sample: two blocks, 42 % of its MACs) keeps them; without the comparison it lost 49 points
(``benchmarks/results/depth-2026-12-07-ranked-only.txt``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import onnx

from ..criteria import get
from ..graph.blocks import Block, find_blocks, remove_blocks
from ..graph.flops import ModelCost
from ..graph.groups import GroupAnalysis, analyze_groups
from ..graph.load import LoadedModel
from ..graph.slice import slice_groups
from ..torchview.view import TorchView
from .context import Run
from .passes import Pass, PassState, Steps
from .recover import selection_loss
from .planner import WidthPlan

__all__ = ["BLOCKS", "DepthResult", "remove_blocks_first", "DEPTH_SHARE", "SCORE_IMAGES"]

log = logging.getLogger(__name__)

# the share of the FLOPs to remove that blocks may take (--structure both; depth: all of it)
DEPTH_SHARE = {"both": 0.5, "depth": 1.0}
SCORE_IMAGES = 32  # calibration images each block is scored on


@dataclass(frozen=True)
class DepthResult:
    """The model the channel rounds start from and what was removed to get it."""

    model: onnx.ModelProto
    analysis: GroupAnalysis
    removed: tuple[Block, ...] = ()
    offered: int = 0  # removable blocks found
    damage: tuple[tuple[str, float], ...] = ()  # each offered block's loss when removed alone
    saves: str = "flops"  # what the ranking divided the damage by: "flops" or "latency" (predicted ms)
    # each set of blocks tried, largest first: (blocks, FLOPs share, its loss, the loss of channels instead)
    compared: tuple[tuple[int, float, float, float], ...] = ()

    def as_dict(self, base_flops: int) -> dict[str, object]:
        return {"offered": self.offered, "removed": [b.add for b in self.removed],
                "flops_removed": sum(2 * b.macs for b in self.removed) / max(base_flops, 1),
                "damage": dict(self.damage), "ranked_by": self.saves,
                "against_channels": [{"blocks": n, "flops_share": share, "loss": loss, "channels_loss": channels}
                                     for n, share, loss, channels in self.compared]}


def block_savings(blocks: list[Block], plan: WidthPlan, analysis: GroupAnalysis, target_latency: float | None
                  ) -> tuple[dict[str, float], float, str]:
    """What removing each block alone saves and what the target asks to remove, in one unit:
    predicted milliseconds where the run has latency tables (a depthwise block saves more time
    per FLOP than its MACs say), else FLOPs."""
    if plan.latency is None or plan.base_ms is None:
        to_remove = float(max(plan.base.flops - plan.target_flops, 0))
        return {b.add: float(2 * b.macs) for b in blocks}, to_remove, "flops"
    cost, shapes = analysis.cost, analysis.shapes
    whole = plan.latency.predict(cost, shapes)
    saved = {}
    for b in blocks:
        gone = {b.add, *b.nodes}
        rest = ModelCost(tuple(n for n in cost.nodes if n.name not in gone), cost.params)
        saved[b.add] = max(whole - plan.latency.predict(rest, shapes), 0.0)
    # the target in predicted ms: a latency target directly, a FLOPs target as that share of the time
    share = min(plan.target_flops / max(plan.base.flops, 1), target_latency or 1.0)
    return saved, max(whole * (1 - share), 0.0), "latency"


def remove_blocks_first(run: Run, plan: WidthPlan, analysis: GroupAnalysis) -> DepthResult:
    """The work model with the blocks removed that cost least per millisecond (or FLOP) saved, up
    to ``DEPTH_SHARE`` of what the target removes; the work model as it is where no block can go."""
    o, work, image = run.options, run.model.work.model, run.model.work.image
    blocks = find_blocks(work, analysis.shapes)
    if not blocks:
        log.info("blocks: none removable (no residual branch read by nothing else); pruning channels only")
        return DepthResult(work, analysis)
    images = run.data.calibration[:SCORE_IMAGES]
    teacher = [t[: len(images)] for t in run.data.calibration_targets.teacher]
    damage = {}
    for k, block in enumerate(blocks):
        run.progress("scoring blocks", k, len(blocks))
        damage[block.add] = selection_loss(remove_blocks(work, [block]), image.name, images, teacher,
                                           run.training.settings.output_kinds)
    run.progress("scoring blocks", len(blocks), len(blocks))
    saves, to_remove, unit = block_savings(blocks, plan, analysis, o.target_latency)
    allowed = DEPTH_SHARE[o.structure] * to_remove
    # nor more FLOPs than a FLOPs target removes (a block may save more time than its FLOPs say)
    most_flops = plan.base.flops - plan.target_flops if plan.target_flops < plan.base.flops else plan.base.flops
    chosen: list[Block] = []
    saved, flops = 0.0, 0
    for block in sorted(blocks, key=lambda b: damage[b.add] / max(saves[b.add], 1e-12)):
        overlaps = any(block.add in c.nodes or c.add in block.nodes for c in chosen)  # nested blocks
        if overlaps or saved + saves[block.add] > allowed or flops + 2 * block.macs > most_flops:
            continue
        chosen.append(block)
        saved, flops = saved + saves[block.add], flops + 2 * block.macs
    per = "ms of predicted latency" if unit == "latency" else "FLOP"
    if not chosen:
        log.info("blocks: none of the %d removable fits within %.0f%% of what the target removes; "
                 "pruning channels only", len(blocks), 100 * DEPTH_SHARE[o.structure])
        return DepthResult(work, analysis, (), len(blocks), tuple(damage.items()), unit)
    chosen, compared = _better_than_channels(run, plan, analysis, chosen, damage, images, teacher)
    if not chosen:
        log.info("blocks: removing any of them moves the outputs more than removing as many FLOPs by channels; "
                 "pruning channels only")
        return DepthResult(work, analysis, (), len(blocks), tuple(damage.items()), unit, compared)
    model = remove_blocks(work, chosen)
    flops = sum(2 * b.macs for b in chosen)
    log.info("blocks: removed %d of %d residual blocks (%.1f%% of the FLOPs), those whose outputs moved least per "
             "%s: %s", len(chosen), len(blocks), 100 * flops / plan.base.flops, per, ", ".join(b.add for b in chosen))
    return DepthResult(model, analyze_groups(LoadedModel(model, image, None)), tuple(chosen), len(blocks),
                       tuple(damage.items()), unit, compared)


def _better_than_channels(run: Run, plan: WidthPlan, analysis: GroupAnalysis, chosen: list[Block],
                          damage: dict[str, float], images, teacher
                          ) -> tuple[list[Block], tuple[tuple[int, float, float, float], ...]]:
    """The longest head of ``chosen`` (ranked best first) whose removal moves the outputs no more
    than removing as many FLOPs by channels; each head tried, with both losses (a single block's
    is its ``damage``, measured already)."""
    o, work, image = run.options, run.model.work.model, run.model.work.image
    view = TorchView.of(work, image, analysis=analysis)
    scores = view.scores(analysis, get(o.criterion), run.data.calibration, run.training.settings.at_once,
                         run.data.calibration_targets, o.seed)
    compared = []
    for count in range(len(chosen), 0, -1):
        run.progress("blocks against channels", len(chosen) - count, len(chosen))
        head = chosen[:count]
        flops = sum(2 * b.macs for b in head)
        loss = damage[head[0].add] if count == 1 else selection_loss(remove_blocks(work, head), image.name, images,
                                                                     teacher, run.training.settings.output_kinds)
        cut = plan.choose(work, analysis, scores, analysis.cost.flops - flops, o.flops_weight, hardware_aware=False)
        sliced, _ = slice_groups(work, image, analysis, cut.keep)
        instead = selection_loss(sliced, image.name, images, teacher, run.training.settings.output_kinds)
        compared.append((count, flops / plan.base.flops, loss, instead))
        log.info("blocks: %d block(s), %.1f%% of the FLOPs: loss %.4g against %.4g for channels instead", count,
                 100 * flops / plan.base.flops, loss, instead)
        if loss <= instead:
            return head, tuple(compared)
    return [], tuple(compared)


def _blocks_pass(run: Run, plan: WidthPlan, state: PassState, steps: Steps) -> PassState:  # noqa: ARG001
    depth = remove_blocks_first(run, plan, run.model.work_groups)
    return replace(state, start=depth.model, start_groups=depth.analysis, blocks=depth.as_dict(plan.base.flops))


def _structure_asks(run: Run, state: PassState) -> bool:  # noqa: ARG001
    return run.options.structure != "width"


# measured on rank 0 alone (the damage of each block, the latency tables), then shared
BLOCKS = Pass("blocks", _blocks_pass, ensures=("start", "start_groups", "blocks"), applies=_structure_asks,
              resumable=False, on_main=True)
