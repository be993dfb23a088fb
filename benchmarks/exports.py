"""Files as users export them: model × export form → imports, prunable FLOPs share, prunes at
0.5, verified, time.

Forms: torch's TorchScript and dynamo exporters with their defaults (batch fixed at 1,
BatchNorm folded) and with a dynamic batch, TorchScript at opset 11, Keras applications through
tf2onnx (NHWC input behind a Transpose; opsets 11, 13 and 18), and YOLO-style detectors. Random
weights and random data: the quality budget is off (``max_drop=100``), the short schedule of the
tests is used, widths are free (``round_to=1``) and nothing is timed but the whole job.

Keras 3 breaks ``tf2onnx.convert.from_keras``, and ``from_function`` leaves EfficientNet's
Normalization statistics as graph inputs, so the Keras files go through a SavedModel and
``python -m tf2onnx.convert --saved-model``, in another Python that has TensorFlow and tf2onnx
(``--tf-python``, e.g. a venv with ``pip install tensorflow-cpu tf2onnx``); without it those
rows say so.

    python benchmarks/exports.py [--tf-python /path/to/python] [--models resnet18 ...]
                                 [--forms torch detectors keras] [--output FILE]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from detectors import build_detector, export_detector  # noqa: E402
from zoo import ZOO, build_torch_model, export_onnx  # noqa: E402

from onnxprune.groups import analyze_groups  # noqa: E402
from onnxprune.importer import import_model  # noqa: E402
from onnxprune.load import load  # noqa: E402
from onnxprune import prune  # noqa: E402

FAST = dict(rounds=2, round_steps=2, epochs=0.5, calibration_images=32, round_to=1, bench=False, max_drop=100)
KERAS = (("MobileNetV2", 96, 13), ("ResNet50", 64, 13), ("EfficientNetB0", 64, 13), ("MobileNetV2", 96, 11),
         ("MobileNetV2", 96, 18))

_KERAS_EXPORT = """
import subprocess, sys
import keras
name, size, opset, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
keras.utils.set_random_seed(0)
model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3))
model.export(out + ".savedmodel", verbose=False)  # then tf2onnx's documented route for TF2 models
subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", out + ".savedmodel",
                "--opset", str(opset), "--output", out], check=True, capture_output=True)
"""

def _torch_forms(name: str, folder: Path, size: int):
    for exporter in ("torchscript", "dynamo"):
        for dynamic, label in ((False, "default"), (True, "dynamic batch")):
            path = folder / f"{name}.{exporter}.{label.replace(' ', '_')}.onnx"
            yield f"{exporter} {label}", lambda p=path, e=exporter, d=dynamic: export_onnx(
                build_torch_model(name), p, e, size=size, dynamic_batch=d), size


def _row(model: str, form: str, export, size: int, layout: str = "NCHW") -> str:
    started = time.perf_counter()
    try:
        path = export()
    except Exception as err:  # an exporter failing is a result too
        return f"{model:<26}{form:<28}  export failed: {str(err).splitlines()[0][:70]}"
    shape = (24, 3, size, size) if layout == "NCHW" else (24, size, size, 3)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    try:
        loaded = load(path)
        import_model(loaded)
        share = analyze_groups(loaded).prunable_flops_share()
    except Exception as err:
        return f"{model:<26}{form:<28}{'no':>8}  {type(err).__name__}: {str(err).splitlines()[0][:80]}"
    started = time.perf_counter()
    try:
        report = prune(path, x, 0.5, **FAST).report.as_dict()
        outcome = f"{report['flops']['fraction']:>9.3f}{'yes':>9}{report['batchnorm_inserted']:>10}"
        fixed = report["fixed_batch"]
    except Exception as err:
        outcome = f"  failed: {type(err).__name__}: {str(err).splitlines()[0][:70]}"
        fixed = loaded.fixed_batch
    batch = "free" if fixed is None else str(fixed)
    return (f"{model:<26}{form:<28}{'yes':>8}{batch:>7}{share:>10.2f}{outcome}"
            f"{time.perf_counter() - started:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(ZOO))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--forms", nargs="+", choices=["torch", "detectors", "keras"],
                        default=["torch", "detectors", "keras"])
    parser.add_argument("--tf-python", help="a Python with tensorflow-cpu and tf2onnx, for the Keras rows")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "exports.txt")
    args = parser.parse_args()
    lines = ["# Export forms: imports, prunable FLOPs share, pruned at 0.5 FLOPs (random weights, "
             "budget off), verified", "",
             f"{'model':<26}{'form':<28}{'imports':>8}{'batch':>7}{'prunable':>10}{'pruned':>9}{'verified':>9}"
             f"{'BN added':>10}{'time s':>8}"]
    print("\n".join(lines), flush=True)

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.models if "torch" in args.forms else ():
            for form, export, size in _torch_forms(name, folder, args.size):
                emit(_row(name, form, export, size))
        if "torch" in args.forms:
            opset11 = folder / "resnet18.opset11.onnx"
            emit(_row("resnet18", "torchscript default opset 11", lambda: _export_opset(opset11, 11, args.size),
                      args.size))
        for name in ("yolov8n", "yolox_style") if "detectors" in args.forms else ():
            for exporter in ("torchscript", "dynamo"):
                path = folder / f"{name}.{exporter}.onnx"
                emit(_row(name, f"{exporter} default", lambda p=path, n=name, e=exporter: export_detector(
                    build_detector(n), p, e, size=128), 128))
        for name, size, opset in KERAS if "keras" in args.forms else ():
            path = folder / f"{name}.{opset}.onnx"
            if not args.tf_python:
                emit(f"{name:<26}{f'tf2onnx opset {opset}':<28}  skipped: pass --tf-python (TensorFlow + tf2onnx)")
                continue
            emit(_row(name, f"tf2onnx opset {opset}", lambda p=path, n=name, s=size, o=opset: _export_keras(
                args.tf_python, n, s, o, p), size, layout="NHWC"))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"\nsaved to {args.output}")


def _export_opset(path: Path, opset: int, size: int) -> Path:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(build_torch_model("resnet18"), (torch.randn(1, 3, size, size),), str(path),
                          dynamo=False, opset_version=opset)
    return path


def _export_keras(python: str, name: str, size: int, opset: int, path: Path) -> Path:
    done = subprocess.run([python, "-c", _KERAS_EXPORT, name, str(size), str(opset), str(path)],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "tf2onnx failed")
    return path


if __name__ == "__main__":
    main()
