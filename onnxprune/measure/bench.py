"""Latency in onnxruntime: several models timed interleaved, in one process, same options.

Runs alternate between the models (and their order rotates every run) so that drift of a shared
machine hits all of them alike. Worker threads do not spin while idle, so idle sessions cannot
busy-wait on the cores of the one being timed (`benchmarks/spinning.py` compares both ways).
CUDA uses IO binding, so host↔device copies are not timed.
Speed-ups are reported with the spread, and flagged when the spread is larger than the gain.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx

from ..errors import OnnxpruneError
from ..graph.devices import onnxruntime_device
from ..graph.image_input import ImageInput
from ..graph.load import load
from ..graph.runtime import make_session
from ..graph.shapes import random_input

__all__ = ["Timing", "BenchResult", "benchmark", "benchmark_files", "device_name", "time_interleaved"]


@dataclass(frozen=True)
class Timing:
    name: str
    median_ms: float
    p90_ms: float
    spread: float  # interquartile range ÷ median: how noisy the timings were
    runs: int
    speedup: float  # median of the first model ÷ this one's
    within_noise: bool  # the speed-up is smaller than the spread of either model


@dataclass(frozen=True)
class BenchResult:
    provider: str
    device: str
    threads: int
    batch: int
    warmup: int
    runs: int
    timings: tuple[Timing, ...]

    def as_dict(self) -> dict:
        return asdict(self)


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class _Runner:
    """One session and a way to run it once, as the timing loop needs it."""

    def __init__(self, model: onnx.ModelProto, feed: dict[str, np.ndarray], device: str, threads: int):
        self.session = make_session(model, device, threads, spinning=False)
        self.device = device
        if device == "cuda":
            import onnxruntime as ort

            self.binding = self.session.io_binding()
            for name, value in feed.items():
                self.binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0))
            for out in self.session.get_outputs():
                self.binding.bind_output(out.name, "cuda")
        else:
            self.feed = feed

    def once(self) -> float:
        start = time.perf_counter()
        if self.device == "cuda":
            self.session.run_with_iobinding(self.binding)
            self.binding.synchronize_outputs()
        else:
            self.session.run(None, self.feed)
        return time.perf_counter() - start


def time_interleaved(
    entries: list[tuple[onnx.ModelProto, dict[str, np.ndarray]]], device: str, threads: int, warmup: int,
    runs: int | Callable[[float], int],
) -> list[np.ndarray]:
    """Milliseconds of ``runs`` runs of each (model, feed), interleaved in a rotating order;
    ``runs`` may be a function of the first model's milliseconds (its last warm-up run)."""
    runners = [_Runner(model, feed, device, threads) for model, feed in entries]
    first = 0.0  # seconds of the first model's last warm-up run
    for k, runner in enumerate(runners):
        for _ in range(warmup):
            seconds = runner.once()
            first = seconds if k == 0 else first
    if callable(runs):
        runs = runs(1e3 * (first or runners[0].once()))
    samples: list[list[float]] = [[] for _ in runners]
    for r in range(runs):
        order = list(range(len(runners)))
        order = order[r % len(order):] + order[: r % len(order)]
        for i in order:
            samples[i].append(runners[i].once())
    return [np.asarray(times) * 1e3 for times in samples]


def benchmark(
    models: list[tuple[str, onnx.ModelProto]],
    image: ImageInput,
    device: str = "auto",
    threads: int | None = None,
    batch: int = 1,
    warmup: int = 5,
    runs: int = 50,
    inputs: np.ndarray | None = None,
    seed: int = 0,
) -> BenchResult:
    """Time each model ``runs`` times, interleaved; the first model is the baseline."""
    if runs < 3 or warmup < 0 or batch < 1:
        raise OnnxpruneError("--runs must be at least 3, --warmup not negative and --batch at least 1")
    device = onnxruntime_device(device)
    threads = threads or os.cpu_count() or 1
    if inputs is None:
        inputs = random_input(image.shape(batch), seed)
    else:
        reps = int(np.ceil(batch / len(inputs)))
        inputs = np.concatenate([inputs] * reps)[:batch]
    feed = {image.name: np.ascontiguousarray(inputs)}
    samples = time_interleaved([(model, feed) for _, model in models], device, threads, warmup, runs)
    stats = []
    for (name, _), ms in zip(models, samples):
        p25, median, p75, p90 = np.percentile(ms, [25, 50, 75, 90])
        stats.append((name, float(median), float(p90), float((p75 - p25) / median), len(ms)))
    base_median, base_spread = stats[0][1], stats[0][3]
    timings = tuple(
        Timing(name, median, p90, spread, n, base_median / median,
               abs(base_median / median - 1) < max(spread, base_spread))
        for name, median, p90, spread, n in stats
    )
    provider = "CUDAExecutionProvider" if device == "cuda" else "CPUExecutionProvider"
    return BenchResult(provider, device_name(device), threads, batch, warmup, runs, timings)


def benchmark_files(paths: list[str | Path], input_size: tuple[int, int] | None = None, **kwargs) -> BenchResult:
    """Load each file (checked like any input) and benchmark them against the first."""
    loaded = [load(p, input_size) for p in paths]
    image = loaded[0].image
    for other, path in zip(loaded[1:], paths[1:]):
        if other.image.shape(1) != image.shape(1) or other.image.name != image.name:
            raise OnnxpruneError(f"{path} takes a different input than {paths[0]}; compare like with like")
    return benchmark([(str(p), lm.model) for p, lm in zip(paths, loaded)], image, **kwargs)
