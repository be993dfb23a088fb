"""How one model travels through onnxprune's modules in ``prune()``: a call trace.

Runs ``onnxprune.prune`` on a sample (to 50 % of the FLOPs, one epoch, width step 8 and no
timing, so nothing varies) under ``sys.setprofile`` and prints, for calls between onnxprune's
own modules: the modules entered, the distinct caller → callee module pairs, the walk (each
function in the order it is first called, consecutive functions of one module one stay: the
stays, and how many of them return to a module already left), and how often the graph is
traced, its shapes probed and a quality measured. Only code written in a module counts: the
methods ``dataclasses`` generates (``__init__``, ``__eq__``…) are left out, so building a value of
a module's type is not a trip to that module. It reads the package wherever it is,
so two commits compare:

    python benchmarks/call_trace.py [--model digits_resnet.onnx] [--list]

``--list`` prints each pair with the functions it calls, and counts the pairs that only call back
(a progress lambda or an ``on_main`` closure, written in one module and called from another).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_models"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits_resnet.onnx")
    parser.add_argument("--list", action="store_true",
                        help="print every caller → callee pair, the functions it calls, and the modules entered")
    args = parser.parse_args()
    import onnxprune

    modules = sum(1 for _ in Path(onnxprune.__file__).parent.rglob("*.py"))
    edges: dict[tuple[str, str], int] = {}
    callees: dict[tuple[str, str], set[str]] = {}  # the functions each pair calls: a lambda is a callback
    entered: set[str] = set()
    first_calls: dict[tuple[str, str], None] = {}  # (module, function) in the order first called
    repeated = {"find_groups": 0, "probe_shapes": 0, "measure": 0}  # tracing, shape probes, quality measures

    def profile(frame, event, arg):  # noqa: ARG001
        if event != "call" or frame.f_code.co_name == "<module>":  # calls, not imports
            return
        if frame.f_code.co_filename == "<string>":  # a method dataclasses wrote: building a value is no trip
            return
        callee = frame.f_globals.get("__name__", "")
        if not callee.startswith("onnxprune.") and callee != "onnxprune":
            return
        entered.add(callee)
        first_calls.setdefault((callee, frame.f_code.co_qualname), None)
        if frame.f_code.co_name in repeated and callee.rpartition(".")[2] in ("groups", "shapes", "tasks"):
            repeated[frame.f_code.co_name] += 1
        caller_frame = frame.f_back
        caller = caller_frame.f_globals.get("__name__", "") if caller_frame else ""
        if caller != callee and (caller.startswith("onnxprune.") or caller == "onnxprune"):
            edges[caller, callee] = edges.get((caller, callee), 0) + 1
            callees.setdefault((caller, callee), set()).add(frame.f_code.co_qualname)

    with tempfile.TemporaryDirectory() as scratch:
        # max_drop 100: the trip is the point, not the quality (one epoch loses rounds, and they stop)
        options = dict(labels="imagefolder", epochs=1, round_steps=2, bench=False, round_to=8, seed=0, max_drop=100,
                       checkpoint_dir=str(Path(scratch) / "checkpoints"))
        sys.setprofile(profile)
        try:
            onnxprune.prune(str(SAMPLES / args.model), str(SAMPLES / "digits"), 0.5, **options)
        finally:
            sys.setprofile(None)
    print(f"# call_trace.py: prune({args.model}, target 0.5); the package has {modules} modules")
    print(f"modules entered          {len(entered)}")
    print(f"caller → callee pairs    {len(edges)}")
    walk = [module for module, _ in first_calls]
    stays = [m for i, m in enumerate(walk) if i == 0 or walk[i - 1] != m]
    returns = sum(m in stays[:i] for i, m in enumerate(stays))
    print(f"functions called         {len(first_calls)}")
    print(f"stays (walk)             {len(stays)}  ({returns} return to a module already left)")
    print(f"graphs traced            {repeated['find_groups']}  (groups.find_groups)")
    print(f"shapes probed            {repeated['probe_shapes']}  (shapes.probe_shapes: an onnxruntime run)")
    print(f"quality measures         {repeated['measure']}  (tasks.measure)")
    if args.list:
        for (a, b), n in sorted(edges.items()):
            print(f"  {a} → {b}: {n}  ({', '.join(sorted(callees[a, b])[:4])})")
        callbacks = [pair for pair, names in callees.items() if all("<locals>" in name for name in names)]
        print(f"pairs that only call back (every function called is a closure or lambda passed in): {len(callbacks)}")
        print("modules entered:", " ".join(sorted(m.removeprefix("onnxprune.") for m in entered)))


if __name__ == "__main__":
    main()
