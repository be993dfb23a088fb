"""Timing side by side: interleaved runs, the first model as the baseline, clear refusals."""

from __future__ import annotations

import onnx
import pytest
from conftest import SAMPLES

from onnxprune.errors import OnnxpruneError
from onnxprune.graph.devices import cuda_available, onnxruntime_device
from onnxprune.graph.load import load
from onnxprune.measure.bench import benchmark, benchmark_files


def test_models_are_timed_the_same_number_of_times_against_the_first() -> None:
    loaded = load(SAMPLES / "digits_vgg.onnx")
    result = benchmark([("a", loaded.model), ("b", loaded.model)], loaded.image, device="cpu", threads=1,
                       warmup=1, runs=5)
    assert [t.name for t in result.timings] == ["a", "b"] and [t.runs for t in result.timings] == [5, 5]
    assert result.timings[0].speedup == 1.0 and result.timings[0].median_ms > 0
    assert result.provider == "CPUExecutionProvider" and result.threads == 1


def test_too_few_runs_are_refused() -> None:
    loaded = load(SAMPLES / "digits_vgg.onnx")
    with pytest.raises(OnnxpruneError, match="--runs must be at least 3"):
        benchmark([("a", loaded.model)], loaded.image, runs=2)


def test_files_with_different_inputs_are_not_compared(tmp_path) -> None:
    other = onnx.load(str(SAMPLES / "digits_vgg.onnx"))
    other.graph.input[0].name = "renamed"
    for node in other.graph.node:
        node.input[:] = ["renamed" if i == "image" else i for i in node.input]
    onnx.save(other, str(tmp_path / "other.onnx"))
    with pytest.raises(OnnxpruneError, match="takes a different input"):
        benchmark_files([SAMPLES / "digits_vgg.onnx", tmp_path / "other.onnx"], runs=3)


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_and_auto_falls_to_the_cpu() -> None:
    assert onnxruntime_device("auto") == "cpu"
    with pytest.raises(OnnxpruneError, match="no CUDA GPU"):
        onnxruntime_device("cuda")
