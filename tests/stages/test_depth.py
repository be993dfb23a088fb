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


def test_a_model_without_blocks_prunes_channels_only() -> None:
    result = prune(SAMPLES / "digits_vgg.onnx", SAMPLES / "digits", target_flops=0.5, structure="both", **QUICK)
    assert result.report.blocks == {"offered": 0, "removed": [], "flops_removed": 0.0, "damage": {}}


def test_blocks_need_a_flops_target() -> None:
    with pytest.raises(OnnxpruneError, match="--structure both removes blocks towards a FLOPs target"):
        prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", max_drop=2, structure="both")
