"""Files as users export them: model × export form → imports, prunable FLOPs share, prunes at
0.5, verified, time.

Forms: torch's TorchScript and dynamo exporters with their defaults (batch fixed at 1,
BatchNorm folded) and with a dynamic batch, TorchScript at opset 11, Keras applications through
tf2onnx (NHWC input behind a Transpose; opsets 11, 13 and 18), and YOLO-style detectors.
``wild``: the forms third-party files come in — YOLOv8 through Ultralytics' exporter with
``dynamic=True`` (opsets 12 and 17, simplified or not), CNN + LSTM/GRU readers with a
sequence-first output (torch defaults, and a dynamic batch), a segmenter exported at opset 9
(BatchNorm kept, Upsample nearest and bilinear), every weight held in a ``Constant`` node, and a
Keras landmark model with PReLU and SAME_UPPER convolutions and pools at a free height and width
through tf2onnx (opsets 9 and 13). Random
weights and random data: the quality budget is off (``max_drop=100``), the short schedule of the
tests is used, widths are free (``round_to=1``) and nothing is timed but the whole job.

Keras 3 breaks ``tf2onnx.convert.from_keras``, and ``from_function`` leaves EfficientNet's
Normalization statistics as graph inputs, so the Keras files go through a SavedModel and
``python -m tf2onnx.convert --saved-model``, in another Python that has TensorFlow and tf2onnx
(``--tf-python``, e.g. a venv with ``pip install tensorflow-cpu tf2onnx``); without it those
rows say so.

    python benchmarks/exports.py [--tf-python /path/to/python] [--models resnet18 ...]
                                 [--forms torch detectors keras wild] [--output FILE]
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

from onnxprune import prune  # noqa: E402
from onnxprune.graph.groups import analyze_groups  # noqa: E402
from onnxprune.graph.load import load  # noqa: E402
from onnxprune.torchview.importer import import_model  # noqa: E402

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


def _row(model: str, form: str, export, size: int, layout: str = "NCHW", shape: tuple[int, ...] | None = None,
         input_size: tuple[int, int] | None = None) -> str:
    started = time.perf_counter()
    try:
        path = export()
    except Exception as err:  # an exporter failing is a result too
        return f"{model:<26}{form:<36}  export failed: {str(err).splitlines()[0][:70]}"
    shape = shape or ((24, 3, size, size) if layout == "NCHW" else (24, size, size, 3))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    try:
        loaded = load(path, input_size)
        import_model(loaded)
        share = analyze_groups(loaded).prunable_flops_share()
    except Exception as err:
        return f"{model:<26}{form:<36}{'no':>8}  {type(err).__name__}: {str(err).splitlines()[0][:80]}"
    started = time.perf_counter()
    try:
        report = prune(path, x, 0.5, input_size=input_size, **FAST).report.as_dict()
        outcome = f"{report['flops']['fraction']:>9.3f}{'yes':>9}{report['batchnorm_inserted']:>10}"
        fixed = report["fixed_batch"]
    except Exception as err:
        outcome = f"  failed: {type(err).__name__}: {str(err).splitlines()[0][:70]}"
        fixed = loaded.fixed_batch
    batch = "free" if fixed is None else str(fixed)
    return (f"{model:<26}{form:<36}{'yes':>8}{batch:>7}{share:>10.2f}{outcome}"
            f"{time.perf_counter() - started:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(ZOO))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--forms", nargs="+", choices=["torch", "detectors", "keras", "wild"],
                        default=["torch", "detectors", "keras", "wild"])
    parser.add_argument("--tf-python", help="a Python with tensorflow-cpu and tf2onnx, for the Keras rows")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "exports.txt")
    args = parser.parse_args()
    lines = ["# Export forms: imports, prunable FLOPs share, pruned at 0.5 FLOPs (random weights, "
             "budget off), verified", "",
             f"{'model':<26}{'form':<36}{'imports':>8}{'batch':>7}{'prunable':>10}{'pruned':>9}{'verified':>9}"
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
        if "wild" in args.forms:
            for line in _wild_rows(folder, args.tf_python):
                emit(line)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text("\n".join(lines) + "\n")
    print(f"\nsaved to {args.output}")


def _wild_rows(folder: Path, tf_python: str | None):
    from crnn import export_crnn
    from detectors import export_yolov8_dynamic

    for opset in (12, 17):
        for simplify in (False, True):
            form = f"ultralytics dynamic opset {opset}{' simplified' if simplify else ''}"
            yield _row("yolov8n", form, lambda o=opset, s=simplify: export_yolov8_dynamic(folder, o, s, size=128), 128,
                       input_size=(128, 128))
    for rnn, dynamic in (("lstm", False), ("gru", True)):
        form = f"torchscript {'dynamic batch' if dynamic else 'default'} (T,N,C)"
        yield _row(f"crnn_{rnn}", form, lambda r=rnn, d=dynamic: export_crnn(folder / f"crnn_{r}.onnx", r, d), 0,
                   shape=(24, 1, 32, 100))
    for mode in ("nearest", "bilinear"):
        yield _row("segmenter", f"opset 9, BN kept, Upsample {mode}",
                   lambda m=mode: _export_segmenter(folder / f"segmenter_{m}.onnx", m), 64)
    constants = folder / "resnet18.constants.onnx"
    yield _row("resnet18", "weights in Constant nodes", lambda: _weights_as_constants(
        _export_opset(folder / "resnet18.opset13.onnx", 13, 64), constants), 64)
    for opset in (9, 13):
        form = f"tf2onnx opset {opset} SAME_UPPER"
        if not tf_python:
            yield f"{'keras_landmarks':<26}{form:<36}  skipped: pass --tf-python (TensorFlow + tf2onnx)"
            continue
        path = folder / f"landmarks.{opset}.onnx"
        yield _row("keras_landmarks", form, lambda o=opset, p=path: _export_keras_script(tf_python, _LANDMARKS, o, p),
                   96, layout="NHWC", input_size=(96, 96))


def _segmenter(mode: str):
    """A small encoder-decoder: strided convs down, Upsample (nn.Upsample at opset 9) back up."""
    import torch
    from torch import nn

    class Segmenter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.down = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())
            self.up = nn.Upsample(scale_factor=2, mode=mode)
            self.mid = nn.Sequential(nn.Conv2d(32, 16, 3, 1, 1), nn.BatchNorm2d(16), nn.ReLU())
            self.head = nn.Conv2d(16, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.up(self.mid(self.up(self.down(x)))))

    torch.manual_seed(0)
    return Segmenter().eval()


def _export_segmenter(path: Path, mode: str) -> Path:
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_segmenter(mode), (torch.randn(1, 3, 64, 64),), str(path), dynamo=False,
                          opset_version=9, do_constant_folding=False)
    return path


def _weights_as_constants(source: Path, path: Path) -> Path:
    """The file with every initializer moved into a Constant node, as some converters write."""
    import onnx

    model = onnx.load(str(source))
    nodes = [onnx.helper.make_node("Constant", [], [init.name], name=f"const/{init.name}", value=init)
             for init in model.graph.initializer]
    del model.graph.initializer[:]
    kept = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes + kept)
    onnx.save(model, str(path))
    return path


_LANDMARKS = """
import subprocess, sys
import numpy as np
import keras
from keras import layers
opset, out = sys.argv[1], sys.argv[2]
keras.utils.set_random_seed(0)
inp = keras.Input((None, None, 3), name="input")  # a free height and width: tf2onnx writes SAME_UPPER
x = layers.PReLU(shared_axes=[1, 2])(layers.Conv2D(16, 3, strides=2, padding="same")(inp))
x = layers.PReLU(shared_axes=[1, 2])(layers.BatchNormalization()(layers.DepthwiseConv2D(3, padding="same")(x)))
x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
x = layers.PReLU(shared_axes=[1, 2])(layers.Conv2D(32, 3, strides=2, padding="same")(x))
x = layers.AveragePooling2D(3, strides=1, padding="same")(x)
x = layers.GlobalAveragePooling2D()(layers.Conv2D(32, 3, padding="same", activation="relu")(x))
model = keras.Model(inp, layers.Dense(10)(x))
for layer in model.layers:
    if isinstance(layer, layers.PReLU):
        w = layer.get_weights()[0]
        layer.set_weights([np.random.uniform(0.05, 0.3, w.shape).astype(np.float32)])
model.export(out + ".savedmodel", verbose=False)
subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--saved-model", out + ".savedmodel", "--opset", opset,
                "--output", out], check=True, capture_output=True)
"""


def _export_keras_script(python: str, script: str, opset: int, path: Path) -> Path:
    done = subprocess.run([python, "-c", script, str(opset), str(path)], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "tf2onnx failed")
    return path


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
