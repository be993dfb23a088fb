from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SAMPLES = ROOT / "sample_models"
sys.path.insert(0, str(TESTS))

from zoo import build_torch_model, export_onnx  # noqa: E402

SAMPLE_MODELS = sorted(p.name for p in SAMPLES.glob("*.onnx"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--all", action="store_true", help="run the slow tests too (exporters, zoo models, detectors), "
                                                       "as CI does")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``python -m pytest`` runs the fast set; ``--all`` (CI) adds the tests marked slow."""
    if config.getoption("--all") or config.getoption("-m"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        items[:] = [item for item in items if "slow" not in item.keywords]
        config.hook.pytest_deselected(items=slow)
        config.stash[_SKIPPED_SLOW] = len(slow)


_SKIPPED_SLOW = pytest.StashKey[int]()


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    skipped = config.stash.get(_SKIPPED_SLOW, 0)
    if skipped:
        terminalreporter.write_line(f"{skipped} slow tests were not run; `python -m pytest --all` runs everything "
                                    "(as CI does)")


@pytest.fixture(scope="session")
def zoo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("zoo")


@pytest.fixture(scope="session")
def zoo_model(zoo_dir: Path):
    """Export a torchvision model once per session: zoo_model('resnet18', 'dynamo') -> path;
    ``dynamic_batch=False`` gives the exporter's defaults (batch 1, BatchNorm folded)."""

    def get(name: str, exporter: str, dynamic_batch: bool = True) -> Path:
        path = zoo_dir / f"{name}.{exporter}{'' if dynamic_batch else '.default'}.onnx"
        if not path.exists():
            export_onnx(build_torch_model(name), path, exporter, dynamic_batch=dynamic_batch)
        return path

    return get


@pytest.fixture(scope="session", autouse=True)
def latency_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Measured latency tables go to a per-session folder, never the user's ~/.cache."""
    import os

    path = tmp_path_factory.mktemp("latency-cache")
    os.environ["ONNXPRUNE_CACHE_DIR"] = str(path)
    return path
