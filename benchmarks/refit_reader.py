"""What the least-squares refit gives a cut CRNN reader before any fine-tuning, with and without
its recurrent layer: the trained digit reader of ``tasks.py`` (trained there if missing), every
prunable conv group cut to a share of its channels (the filters of largest L1 norm kept), then
sliced plainly, refitted up to the recurrent layer (convolutions only, as before the refit
reached recurrent layers), and refitted through the LSTM's input map too; string agreement (the
reader's measure) and explained variance against the original on fresh lines.

    python benchmarks/refit_reader.py [--keep 0.5 0.7] [--work DIR] [--calibration 64]

Prints the table and saves benchmarks/results/refit_reader.txt.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from table import Table  # noqa: E402
from tasks import _prepare  # noqa: E402

from onnxprune.data.sources import load_data  # noqa: E402
from onnxprune.graph.flops import count  # noqa: E402
from onnxprune.graph.groups import analyze_groups  # noqa: E402
from onnxprune.graph.load import load  # noqa: E402
from onnxprune.graph.reconstruct import RECURRENT, cut_consumers, reconstruct  # noqa: E402
from onnxprune.graph.runtime import run_batched  # noqa: E402
from onnxprune.graph.slice import slice_groups  # noqa: E402
from onnxprune.measure.intervals import drop_interval  # noqa: E402
from onnxprune.measure.metrics import explained_variance  # noqa: E402
from onnxprune.measure.tasks import TaskSettings, measure  # noqa: E402


def _largest_filters(model, analysis, share: float) -> dict[int, np.ndarray]:
    """Per prunable group, the channels whose producers' filters have the largest L1 norm."""
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    nodes = {n.name: n for n in model.graph.node}
    keep = {}
    for g in analysis.prunable:
        norms = sum(np.abs(weights[nodes[p].input[1]]).reshape(g.channels, -1).sum(1) for p in g.producers)
        keep[g.id] = np.sort(np.argsort(-norms)[: max(1, round(share * g.channels))])
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", nargs="+", type=float, default=[0.5, 0.7], help="share of each group's channels")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "onnxprune-tasks")
    parser.add_argument("--calibration", type=int, default=64, help="images the refit is fitted on")
    args = parser.parse_args()
    path, data_folder, fresh_folder, _ = _prepare("reader", args.work, 240, 200)
    loaded = load(path)
    analysis = analyze_groups(loaded)
    calibration = np.concatenate(list(load_data(data_folder, loaded.image).batches(64)))[: args.calibration]
    fresh = load_data(fresh_folder, loaded.image)
    reference = run_batched(loaded.model, loaded.image.name, fresh)
    settings = TaskSettings()
    before = measure("ctc", reference, reference, None, settings)
    base = count(loaded.model, analysis.shapes).flops
    table = Table("refit_reader.txt",
                  f"# the digit reader of tasks.py cut to a share of every conv group's channels (largest L1 filters), "
                  f"before any fine-tuning; refits fitted on {len(calibration)} of its images, judged on "
                  f"{len(fresh)} fresh lines against the original; 95 % intervals",
                  f"{'keep':>5}{'FLOPs':>7}  {'repair':<28}{'strings kept (drop [interval])':<34}{'EV':>7}")
    for share in args.keep:
        keep = _largest_filters(loaded.model, analysis, share)
        sliced, groups = slice_groups(loaded.model, loaded.image, analysis, keep)
        flops = count(sliced, groups.shapes).flops / base
        consumers = cut_consumers(loaded.model, analysis, keep)
        candidates = {"sliced": sliced}
        convs = [c for c in consumers if c.op not in RECURRENT]
        candidates["refit, convolutions only"] = reconstruct(loaded.model, sliced, convs, loaded.image.name,
                                                             calibration)[0]
        candidates["refit, and the LSTM's input"] = reconstruct(loaded.model, sliced, consumers, loaded.image.name,
                                                                calibration)[0]
        for name, model in candidates.items():
            outputs = run_batched(model, loaded.image.name, fresh)
            after = measure("ctc", outputs, reference, None, settings)
            low, high = drop_interval(before, after)
            kept = f"{after.figure():.3f} ({100 * (before.figure() - after.figure()):+.1f} [{low:+.1f}, {high:+.1f}])"
            table.add(f"{share:>5.2f}{flops:>7.3f}  {name:<28}{kept:<34}"
                      f"{explained_variance(outputs[0], reference[0]):>7.3f}")
    table.save()


if __name__ == "__main__":
    main()
