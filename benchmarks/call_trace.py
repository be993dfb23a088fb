"""How one model travels through onnxprune's modules in ``prune()``: a call trace.

Runs ``onnxprune.prune`` on a sample (short: one epoch, the latency target with ``--round-to
auto`` off so no timing varies) under ``sys.setprofile`` and prints, for calls between
onnxprune's own modules: the modules entered, the distinct caller → callee module pairs, and
the pairs that climb — the callee on the same or a higher import floor than the caller (a
module's floor: the longest chain of module-level onnxprune imports beneath it), i.e. a call
against the direction the imports point (mostly callbacks: progress, the teacher, the loss) —
and how often the graph is traced, its shapes probed and a quality measured. Works on any layout of the package, so two commits
compare:

    python benchmarks/call_trace.py [--model digits_resnet.onnx] [--list]
"""

from __future__ import annotations

import argparse
import ast
import functools
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"


def module_imports(package: Path) -> dict[str, set[str]]:
    """Each onnxprune module and the onnxprune modules it imports at module level."""
    graph: dict[str, set[str]] = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        base_package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = base_package.split(".")[: len(base_package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    is_module = (package.parent / candidate.replace(".", "/")).with_suffix(".py").exists()
                    deps.add(candidate if is_module else base)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names)
        graph[name] = {d for d in deps if d.startswith("onnxprune") and d != name}
    return graph


def floors(graph: dict[str, set[str]]) -> dict[str, int]:
    @functools.cache
    def floor(module: str) -> int:
        return 1 + max((floor(d) for d in graph.get(module, ()) if d in graph), default=-1)

    return {m: floor(m) for m in graph}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_resnet.onnx")
    parser.add_argument("--list", action="store_true", help="print every climbing pair")
    args = parser.parse_args()
    import onnxprune

    package = Path(onnxprune.__file__).parent
    floor = floors(module_imports(package))
    edges: dict[tuple[str, str], int] = {}
    entered: set[str] = set()
    repeated = {"find_groups": 0, "probe_shapes": 0, "measure": 0}  # tracing, shape probes, quality measures

    def profile(frame, event, arg):  # noqa: ARG001
        if event != "call" or frame.f_code.co_name == "<module>":  # calls, not imports
            return
        callee = frame.f_globals.get("__name__", "")
        if not callee.startswith("onnxprune.") and callee != "onnxprune":
            return
        entered.add(callee)
        if frame.f_code.co_name in repeated and callee.rpartition(".")[2] in ("groups", "shapes", "tasks"):
            repeated[frame.f_code.co_name] += 1
        caller_frame = frame.f_back
        caller = caller_frame.f_globals.get("__name__", "") if caller_frame else ""
        if caller != callee and (caller.startswith("onnxprune.") or caller == "onnxprune"):
            edges[caller, callee] = edges.get((caller, callee), 0) + 1

    with tempfile.TemporaryDirectory() as scratch:
        options = dict(labels="imagefolder", epochs=1, round_steps=2, bench=False, round_to=8, seed=0,
                       checkpoint_dir=str(Path(scratch) / "checkpoints"))
        sys.setprofile(profile)
        try:
            onnxprune.prune(str(SAMPLES / args.model), str(SAMPLES / "digits"), 0.5, **options)
        finally:
            sys.setprofile(None)
    climbs = {e: n for e, n in edges.items() if floor.get(e[1], 0) >= floor.get(e[0], 0)}
    print(f"# call_trace.py: prune({args.model}, target 0.5) through {len(floor)} modules on "
          f"{1 + max(floor.values())} import floors")
    print(f"modules entered          {len(entered)}")
    print(f"caller → callee pairs    {len(edges)}")
    print(f"pairs that climb         {len(climbs)}  ({sum(climbs.values())} calls)")
    print(f"graphs traced            {repeated['find_groups']}  (groups.find_groups)")
    print(f"shapes probed            {repeated['probe_shapes']}  (shapes.probe_shapes: an onnxruntime run)")
    print(f"quality measures         {repeated['measure']}  (tasks.measure)")
    if args.list:
        for (a, b), n in sorted(climbs.items()):
            print(f"  {a} (floor {floor.get(a)}) → {b} (floor {floor.get(b)}): {n}")
        print("modules entered:", " ".join(sorted(m.removeprefix("onnxprune.") for m in entered)))


if __name__ == "__main__":
    main()
