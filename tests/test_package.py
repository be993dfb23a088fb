"""The package as a whole: what importing it costs and how its modules depend on each other."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from dataclasses import dataclass
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
    code = ("import onnxprune, onnxprune.graph.load, onnxprune.graph.flops, onnxprune.graph.groups, onnxprune.graph.flow, onnxprune.graph.slice, "
            "onnxprune.graph.analysis, onnxprune.criteria, onnxprune.options, onnxprune.graph.ops, onnxprune.graph.free_batch, "
            "onnxprune.graph.runtime")
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


@dataclass(frozen=True)
class Import:
    target: str  # an onnxprune module, or the top package of a third-party one
    module_level: bool  # else inside a function (lazy) or under ``if TYPE_CHECKING``
    line: int
    annotations_only: bool = False  # under ``if TYPE_CHECKING``: never run


def _type_checking_imports(tree: ast.Module) -> set[int]:
    """The ids of the import statements under ``if TYPE_CHECKING:`` blocks."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            found |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return found


def _imports() -> dict[str, list[Import]]:
    """Each onnxprune module and everything it imports, at module level or lazily."""
    found: dict[str, list[Import]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body}
        typing_only = _type_checking_imports(tree)
        imports: list[Import] = []
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    is_module = (PACKAGE.parent / candidate.replace(".", "/")).with_suffix(".py").exists() or \
                        (PACKAGE.parent / candidate.replace(".", "/") / "__init__.py").exists()
                    targets.append(candidate if is_module else base)
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            for target in targets:
                if not target.startswith("onnxprune"):
                    target = target.split(".")[0]
                if target != name:
                    imports.append(Import(target, id(node) in top, node.lineno, id(node) in typing_only))
        found[name] = imports
    return found


def _wing(module: str) -> str:
    """``graph`` for onnxprune.graph.load, ``options`` for onnxprune.options, ``root`` for the package."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "root"


# Which wings each may read (besides itself); the architecture in one table (docs/design.md).
READS = {
    "errors": set(),
    "graph": {"errors"},
    "data": {"graph", "errors"},
    "measure": {"graph", "data", "errors", "root"},
    "criteria": {"graph", "errors"},
    "torchview": {"graph", "data", "measure", "criteria", "errors"},
    "options": {"graph", "criteria", "data", "measure", "errors"},
    "report": {"measure", "root"},
    "render": set(),  # the report's dict in, text and pictures out
    "stages": {"graph", "data", "measure", "criteria", "torchview", "options", "report", "errors", "root"},
    "pipeline": {"graph", "data", "measure", "criteria", "torchview", "stages", "options", "report", "errors"},
    "root": {"errors"},
    "__main__": set(),
}
# Where torch may be imported: everywhere in these wings; elsewhere only at the places listed
# ("module:lazy" inside a function, "module" at module level too).
TORCH_WINGS = {"torchview", "stages", "pipeline"}
TORCH_PLACES = {
    "onnxprune.graph.devices:lazy",  # whether a GPU exists: onnxruntime-gpu cannot tell
    "onnxprune.measure.bench:lazy",  # a CUDA device's name
    "onnxprune.criteria.observe",  # observing runs in the torch view
    "onnxprune.criteria.parts:lazy",  # a reduction's tensor ops
}


def test_each_wing_reads_only_the_wings_below_it() -> None:
    wrong = [f"{module} imports {i.target} (line {i.line})"
             for module, imports in _imports().items() for i in imports
             if i.target.startswith("onnxprune.") and _wing(i.target) != _wing(module)
             and _wing(i.target) not in READS[_wing(module)]]
    assert not wrong, "\n".join(wrong)


def test_torch_is_imported_only_where_the_table_says() -> None:
    wrong = []
    for module, imports in _imports().items():
        for i in imports:
            if i.target not in TORCH_MODULES or _wing(module) in TORCH_WINGS:
                continue
            if module not in TORCH_PLACES and (i.module_level or f"{module}:lazy" not in TORCH_PLACES):
                wrong.append(f"{module} imports {i.target} (line {i.line})")
    assert not wrong, "\n".join(wrong)


def test_every_wing_and_top_module_has_a_rule() -> None:
    assert {_wing(m) for m in _imports()} == set(READS)


def test_no_module_shares_its_name_with_a_public_function() -> None:
    import onnxprune

    for name in onnxprune.__all__:
        assert not (PACKAGE / f"{name}.py").exists() and not (PACKAGE / name).is_dir(), name


def test_the_tests_mirror_the_wings() -> None:
    tests = Path(__file__).resolve().parent
    folders = {p.name for p in tests.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert folders and folders <= {_wing(m) for m in _imports()} - {"root"}, folders


def _module_graph() -> dict[str, set[str]]:
    """Each onnxprune module and the onnxprune modules it imports when it runs: at module level
    or lazily inside a function (a lazy import only hides a circle), not for annotations only."""
    return {m: {i.target for i in imports if not i.annotations_only and i.target.startswith("onnxprune")}
            for m, imports in _imports().items()}


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
    graph = _module_graph()
    assert "onnxprune.graph.flow" in graph["onnxprune.graph.groups"]
    assert "onnxprune.criteria" in graph["onnxprune.options"]  # a lazy import counts
    assert "onnxprune.measure.tasks" not in graph["onnxprune.measure.intervals"]  # one for annotations does not
    assert _cycle(graph) is None, " → ".join(_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_wheel_lists_every_package_folder() -> None:
    """pyproject lists the packages by hand (the CLI's folder is renamed on install); a new folder
    of onnxprune/ that is not listed would be missing from every installed copy."""
    import tomllib

    listed = set(tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {".".join(p.parent.relative_to(PACKAGE.parent).parts) for p in PACKAGE.rglob("__init__.py")}
    assert folders | {"onnxprune_cli"} == listed
