"""--structure both|depth: whole residual blocks removed before the channel rounds, chosen by how
little their removal moves the outputs per FLOP, into a verified file."""

from __future__ import annotations

from pathlib import Path

import pytest

from onnxprune import prune
from onnxprune.errors import OnnxpruneError
from onnxprune.graph.blocks import find_blocks
from onnxprune.graph.groups import analyze_groups
from onnxprune.graph.load import load

SAMPLES = Path(__file__).resolve().parents[2] / "sample_models"
QUICK = dict(round_steps=1, epochs=0.1, calibration_images=16, round_to=1, bench=False, max_drop=100, rounds=2)


@pytest.mark.parametrize("structure", ["both", "depth"])
def test_blocks_go_whole_before_the_channels_and_the_file_verifies(structure: str) -> None:
    loaded = load(SAMPLES / "digits_resnet.onnx")
    offered = find_blocks(loaded.model, analyze_groups(loaded).shapes)
    result = prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", target_flops=0.3, structure=structure, **QUICK)
    blocks = result.report.blocks
    assert blocks is not None and blocks["offered"] == len(offered) and blocks["removed"]
    assert set(blocks["damage"]) == {b.add for b in offered}
    names = {n.name for n in result.model.graph.node}
    gone = {n for b in offered if b.add in blocks["removed"] for n in (b.add, *b.nodes)}
    assert not names & gone  # removed from the written file, not zeroed
    share = 0.5 if structure == "both" else 1.0
    assert 0 < blocks["flops_removed"] <= share * 0.7 + 1e-9
    assert result.report.flops.fraction <= 0.3 + 1e-6 and result.report.verification.max_abs_error < 1e-3
    # the skip's group keeps its name though the removed block's last conv left it (widths.png pairs them)
    assert set(result.report.widths.after) <= set(result.report.widths.before)


def test_a_model_without_blocks_prunes_channels_only() -> None:
    result = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", target_flops=0.5, structure="both", **QUICK)
    assert result.report.blocks == {"offered": 0, "removed": [], "flops_removed": 0.0, "damage": {},
                                    "ranked_by": "flops", "against_channels": []}


def test_blocks_need_a_flops_target() -> None:
    with pytest.raises(OnnxpruneError, match="--structure both removes blocks towards a target"):
        prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", max_drop=2, structure="both")


def test_blocks_are_ranked_by_the_time_they_save_where_the_run_has_latency_tables() -> None:
    from types import SimpleNamespace

    from onnxprune.measure.latency import LatencyModel, LayerTable
    from onnxprune.stages.depth import block_savings

    loaded = load(SAMPLES / "digits_resnet.onnx")
    analysis = analyze_groups(loaded)
    blocks = find_blocks(loaded.model, analysis.shapes)
    base = analysis.cost
    by_flops = SimpleNamespace(latency=None, base_ms=None, base=base, target_flops=int(0.3 * base.flops))
    saves, to_remove, unit = block_savings(blocks, by_flops, analysis, None)
    assert unit == "flops" and saves == {b.add: 2 * b.macs for b in blocks}
    assert to_remove == base.flops - by_flops.target_flops
    # every conv 1 ms per MMAC, except the first conv of the last block's branch: 20 (memory-bound)
    convs = {n.name: n for n in loaded.model.graph.node if n.op_type == "Conv"}
    slow = next(name for name in blocks[-1].nodes if name in convs)
    layers = {}
    for n in base.nodes:
        if n.name in convs and n.macs:
            weight = convs[n.name].input[1]
            out, inp = analysis.shapes[weight][:2]
            rate = 20.0 if n.name == slow else 1.0
            layers[n.name] = LayerTable(n.name, weight, False, (out,), (inp,), ((rate * n.macs / 1e6,),))
    tables = LatencyModel("cpu", 1, 1, 1, layers, {}, 1e-6, 1.0, 0.0, 0.0)
    timed = SimpleNamespace(latency=tables, base_ms=tables.predict(base, analysis.shapes), base=base,
                            target_flops=base.flops)
    saves, to_remove, unit = block_savings(blocks, timed, analysis, 0.5)
    assert unit == "latency" and to_remove == pytest.approx(0.5 * timed.base_ms)
    per_mac = {b.add: saves[b.add] / b.macs for b in blocks}
    assert max(per_mac, key=per_mac.get) == blocks[-1].add  # the slow block saves most per MAC
    assert all(s > 0 for s in saves.values())


def test_a_latency_target_is_a_target_for_blocks_too() -> None:
    from onnxprune.options import resolve

    assert resolve(None, {"target_latency": 0.5, "structure": "both"}).structure == "both"
    with pytest.raises(OnnxpruneError, match="towards a target"):
        resolve(None, {"target_latency": 1.0, "structure": "depth"})


def test_auto_removes_blocks_under_a_target_and_only_channels_with_the_budget_as_the_goal() -> None:
    from onnxprune.options import resolve

    assert resolve(None, {}).structure == "both"  # the default target, 0.3 of the FLOPs
    assert resolve(0.5, {"structure": "auto"}).structure == "both"
    assert resolve(None, {"target_latency": 0.6}).structure == "both"
    assert resolve(None, {"max_drop": 2}).structure == "width"  # no target for blocks to take a share of
    assert resolve(1.0, {}).structure == "width"
    assert resolve(0.5, {"structure": "width"}).structure == "width"


@pytest.mark.slow  # the layer latency tables are timed
def test_with_timed_tables_blocks_go_by_the_time_they_save(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONNXPRUNE_CACHE_DIR", str(tmp_path))
    result = prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", target_flops=0.3, structure="both",
                   **dict(QUICK, round_to="auto"))
    blocks = result.report.blocks
    assert blocks is not None and blocks["ranked_by"] == "latency" and blocks["removed"]
    assert result.report.flops.fraction <= 0.3 + 1e-6 and result.report.verification.max_abs_error < 1e-3


def test_blocks_that_move_the_outputs_more_than_channels_would_stay(tmp_path: Path) -> None:
    """The MobileNet character sample's two blocks hold 42 % of its MACs: removing one moves the
    outputs far more than removing as many FLOPs by channels (without the comparison it lost 49
    points on fresh renders, benchmarks/results/depth-2026-12-07-ranked-only.txt)."""
    import sys

    sys.path.insert(0, str(SAMPLES))
    from chars import write_folder

    data = write_folder(tmp_path / "chars", 3, 7)
    result = prune(SAMPLES / "chars_mobilenet.onnx", data, target_flops=0.3, structure="both", **QUICK)
    blocks = result.report.blocks
    assert blocks is not None and blocks["removed"] == [] and blocks["against_channels"]
    assert all(c["loss"] > c["channels_loss"] for c in blocks["against_channels"])
