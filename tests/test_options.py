"""One source of truth for settings: ``PruneOptions`` makes the CLI's options and checks them."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SAMPLES

import onnxprune_cli.main as cli_main
from onnxprune.errors import OnnxpruneError
from onnxprune.options import InvalidOption, PruneOptions, cli_fields, resolve, validate


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[PruneOptions]:
    """The options a CLI run would prune with, without pruning."""
    seen: list[PruneOptions] = []
    monkeypatch.setattr(cli_main, "_prune_and_write", lambda model, data, options, *rest: seen.append(options))
    return seen


def _prune(*args: str):
    return CliRunner().invoke(cli_main.cli, [str(SAMPLES / "digits_vgg.onnx"), "--data", str(SAMPLES / "digits"), *args])


def test_every_option_the_cli_offers_comes_from_prune_options() -> None:
    command = cli_main.cli.commands["prune"]
    offered = {p.name for p in command.params} - {"model", "data", "output", "as_json"}
    assert offered == {f.name for f in cli_fields()}
    api_only = {f.name for f in fields(PruneOptions)} - offered
    assert api_only == {"bench_runs", "bench_threads", "checkpoint_dir"}


@pytest.mark.parametrize("spelling", [["0.5,0.4,0.3"], ["0.5", "0.4", "0.3"], ["0.5,", "0.4,0.3"]])
def test_mean_takes_commas_or_spaces(captured: list[PruneOptions], spelling: list[str]) -> None:
    result = _prune("--mean", *spelling, "--std", "0.2")
    assert result.exit_code == 0, result.output
    assert captured[0].mean == (0.5, 0.4, 0.3) and captured[0].std == (0.2,)
    assert captured[0].preprocess.mean == (0.5, 0.4, 0.3)


def test_global_flags_work_after_the_command_too(captured: list[PruneOptions]) -> None:
    result = _prune("--seed", "3", "-q")
    assert result.exit_code == 0, result.output
    assert captured[0].seed == 3


def test_cli_defaults_equal_the_api_defaults(captured: list[PruneOptions]) -> None:
    assert _prune().exit_code == 0
    assert captured[0] == resolve(None, {})


@pytest.mark.parametrize("args, flag", [
    (["--round-to", "0"], "--round-to"), (["--batch-size", "0"], "--batch-size"), (["--epochs", "-1"], "--epochs"),
    (["--val-split", "1"], "--val-split"), (["--max-drop", "101"], "--max-drop"), (["--criterion", "x"], "--criterion"),
])
def test_a_bad_value_is_a_usage_error_naming_its_flag(captured: list[PruneOptions], args: list[str], flag: str) -> None:
    result = _prune(*args)
    assert result.exit_code == 2 and flag in result.output and not captured


def test_the_api_runs_the_same_check() -> None:
    with pytest.raises(InvalidOption, match="--batch-size must be at least 1"):
        validate(PruneOptions(batch_size=0))
    with pytest.raises(OnnxpruneError, match="unknown option"):
        resolve(0.5, {"learning_rate": 1})
    assert resolve(None, {"target_latency": 0.5}).target_flops == 1.0
    assert resolve(None, {}).target_flops == 0.3


def test_the_options_page_matches_prune_options() -> None:
    """docs/options.md is generated from the prune command; regenerate it when an option changes."""
    from onnxprune_cli.options import options_markdown

    page = Path(__file__).resolve().parents[1] / "docs" / "options.md"
    assert page.read_text() == options_markdown(), \
        "docs/options.md is stale: python -m onnxprune_cli.options > docs/options.md"


def test_every_option_is_explained_in_the_usage_page() -> None:
    """docs/usage.md says more of each option than its help text; none may be missing there."""
    from onnxprune.options import cli_fields
    from onnxprune_cli.options import _flag

    usage = (Path(__file__).resolve().parents[1] / "docs" / "usage.md").read_text()
    rows = [line for line in usage.splitlines() if line.startswith("| `")]
    missing = [_flag(f) for f in cli_fields() if not any(f"`{_flag(f)}" in row for row in rows)]
    assert not missing, f"docs/usage.md's option table lacks {missing}"


def test_prune_takes_a_typed_options_object_and_keywords_that_override_it() -> None:
    from onnxprune.options import PruneOptions
    from onnxprune.pipeline import _settle

    base = PruneOptions(epochs=2.0, seed=3, round_to=1)
    settled = _settle(None, base, {"seed": 5})
    assert (settled.epochs, settled.seed, settled.round_to, settled.target_flops, settled.max_drop) == (2.0, 5, 1, 0.3, 3.0)
    assert _settle(0.5, base, {}).target_flops == 0.5
    assert _settle(None, PruneOptions(max_drop=1.0), {}).budget_goal  # the budget alone is the goal
    assert _settle(None, None, {"epochs": 2.0}).epochs == 2.0
    with pytest.raises(OnnxpruneError, match="epochs"):
        _settle(None, base, {"epochs": -1.0})
