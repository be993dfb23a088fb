"""Golden files: ``onnxprune analyze --json`` of every bundled sample, as committed.

The analysis (FLOPs, MACs, params, per op type, the costliest nodes, the channel groups and why
each blocked one is blocked) is what the selector, the slicer and the report build on; a change
to any of it shows here as a diff a reviewer can read. After an intended change, regenerate with
``ONNXPRUNE_UPDATE_GOLDEN=1 python -m pytest tests/graph/test_golden.py`` and commit the files.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cli_run import run_cli
from conftest import SAMPLES

GOLDEN = Path(__file__).parent / "golden" / "analyze"
MODELS = sorted(p.name for p in SAMPLES.glob("*.onnx"))


@pytest.mark.parametrize("name", MODELS)
def test_analyze_json_matches_its_golden_file(name: str) -> None:
    done = run_cli("analyze", str(SAMPLES / name), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    result["model"] = name  # where the checkout is does not matter
    result["producer"] = result["producer"].split(" ")[0]  # nor which torch exported it
    golden = GOLDEN / f"{name.removesuffix('.onnx')}.json"
    if os.environ.get("ONNXPRUNE_UPDATE_GOLDEN"):
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    assert golden.exists(), f"no golden file for {name}: run with ONNXPRUNE_UPDATE_GOLDEN=1"
    assert result == json.loads(golden.read_text())


def test_every_golden_file_has_its_sample() -> None:
    assert sorted(p.stem + ".onnx" for p in GOLDEN.glob("*.json")) == MODELS
