"""The package as a whole: what importing it costs and how its modules depend on each other."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from conftest import SAMPLES

PACKAGE = Path(__file__).resolve().parents[1] / "onnxprune"
TORCH_MODULES = ("torch", "onnx2torch", "torchvision")


def _loaded_heavy_modules(code: str) -> list[str]:
    """Which of torch, onnx2torch and torchvision a fresh interpreter has loaded after ``code``."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {TORCH_MODULES!r})))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_onnx_side_imports_without_torch() -> None:
    code = ("import onnxprune, onnxprune.load, onnxprune.flops, onnxprune.groups, onnxprune.flow, onnxprune.slice, "
            "onnxprune.analyze, onnxprune.criteria, onnxprune.options, onnxprune.ops, onnxprune.batch, "
            "onnxprune.runtime")
    assert _loaded_heavy_modules(code) == []


def test_the_package_exports_resolve_on_first_use() -> None:
    import onnxprune
    import onnxprune.pipeline

    assert onnxprune.prune is onnxprune.pipeline.prune and onnxprune.PruneResult is onnxprune.pipeline.PruneResult


def test_version_and_analyze_load_no_torch() -> None:
    code = ("import sys\nfrom onnxprune_cli.main import cli\n"
            f"sys.argv = ['onnxprune', 'analyze', {str(SAMPLES / 'digits_resnet.onnx')!r}, '--json']\n"
            "import contextlib, io\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        cli.main(standalone_mode=False)\n    except SystemExit:\n        pass\n")
    assert _loaded_heavy_modules(code) == []
    version = "import contextlib, io\nfrom onnxprune_cli.main import cli\n" \
              "with contextlib.redirect_stdout(io.StringIO()):\n    cli.main(['--version'], standalone_mode=False)\n"
    assert _loaded_heavy_modules(version) == []


def _module_imports() -> dict[str, set[str]]:
    """Each onnxprune module and the onnxprune modules it imports at module level."""
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:  # module level only: lazy imports are the point
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    deps.add(candidate if (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                             else base)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d.startswith("onnxprune") and d != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_module_imports_itself_through_others() -> None:
    graph = _module_imports()
    assert "onnxprune.groups" in graph and "onnxprune.flow" in graph["onnxprune.groups"]
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
