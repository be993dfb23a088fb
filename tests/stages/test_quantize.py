"""Prune → INT8 (quantize.py): checked, benchmarked, the signature kept, post-processing in float."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cli_run import run_cli
from conftest import SAMPLES

from onnxprune import prune
from onnxprune.graph.runtime import run_model

QUICK = dict(round_steps=1, epochs=0.1, calibration_images=32, round_to=1, bench=False)


def test_int8_after_pruning_is_checked_benchmarked_and_keeps_the_signature() -> None:
    result = prune(SAMPLES / "digits_vgg.default.onnx", SAMPLES / "digits", 0.5, labels="imagefolder", quantize="int8",
                   **{**QUICK, "bench": True, "bench_runs": 3, "max_drop": 100})
    names = [s.name for s in result.report.stages]
    assert names == ["original", "pruned", "pruned + INT8"]
    original, pruned, int8 = result.report.stages
    assert int8.size_bytes < 0.4 * pruned.size_bytes and pruned.size_bytes < original.size_bytes
    assert int8.flops == pruned.flops < original.flops
    assert [t["name"] for t in result.report.latency["timings"]] == names
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in result.model.graph.node}
    assert result.report.quality.after == int8.quality  # the report's quality is the delivered model's
    dims = result.model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_value == 1  # the file's fixed batch, as given
    out = run_model(result.model, {"image": np.zeros((1, 3, 32, 32), np.float32)})[0]
    assert out.shape == (1, 10)


def test_an_int8_model_that_fails_the_checker_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The INT8 model meets the float model's contract before it is judged or written: one the
    checker refuses (a weight's scale of the wrong type here) ends the run with one line, no file."""
    from onnx import TensorProto

    import onnxprune.stages.deliver as deliver

    real = deliver.quantize_int8

    def broken(*args, **kwargs):
        model = real(*args, **kwargs)
        scale = next(t for t in model.graph.initializer if t.name.endswith("_scale"))
        scale.data_type = TensorProto.DOUBLE  # DequantizeLinear's scale must match its output type
        scale.raw_data = np.asarray(np.frombuffer(scale.raw_data, np.float32), np.float64).tobytes()
        return model

    monkeypatch.setattr(deliver, "quantize_int8", broken)
    out = tmp_path / "int8.onnx"
    done = run_cli(str(SAMPLES / "digits_vgg.onnx"), "--data", str(SAMPLES / "digits"), "--target-flops", "0.6",
                   "--quantize", "int8", "--round-steps", "1", "--epochs", "0", "--round-to", "1", "--no-bench",
                   "-o", str(out))
    assert done.returncode != 0
    assert done.stderr.strip().splitlines()[-1].startswith("onnxprune: error: the INT8 model fails the ONNX checker")
    assert "Traceback" not in done.stderr and not out.exists()
    assert not list(tmp_path.glob("*.onnx*"))  # (the run's checkpoints stay, for --resume)


def test_target_one_quantizes_without_pruning_or_fine_tuning() -> None:
    result = prune(SAMPLES / "digits_resnet.onnx", SAMPLES / "digits", 1.0, labels="imagefolder", quantize="int8",
                   **{**QUICK, "epochs": 5.0})
    assert [s.name for s in result.report.stages] == ["original", "INT8"]
    assert "final fine-tuning" not in result.report.stage_times_s
    assert result.report.quality.drop.points <= 3


def test_what_follows_the_last_weighted_layer_stays_in_float() -> None:
    """A detector's decoding (sigmoid scores beside pixel boxes, concatenated) is left out."""
    from onnx import TensorProto, helper, numpy_helper

    from onnxprune.stages.quantize import float_tail

    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="pre"),
             helper.make_node("Conv", ["r", "w"], ["c"], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="scores"),
             helper.make_node("Mul", ["c", "c"], ["b"], name="boxes"),
             helper.make_node("Concat", ["b", "s"], ["y"], name="decode", axis=1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])
    assert sorted(float_tail(helper.make_model(graph))) == ["boxes", "decode", "scores"]
