"""How latency moves with channel counts, measured on the device that will run the model.

Two measurements, both in onnxruntime with the benchmark's session options and cached per device:

- the width granularity (``--round-to auto``): two 3×3 convs at 64 channels timed against the
  same at 62, 60, 56 and 48. A width that realizes less than half of its ideal saving is
  misaligned for this device's kernels (onnxruntime's CPU kernels block channels by 8 or 16,
  CUDA's tensor cores want multiples of 8); the granularity is twice the largest power of two
  that such a width is a multiple of.
- a latency table per layer: each prunable Conv timed alone at its own shape on a grid of
  100/50/25 % of its output × input channels (depthwise: 100/75/50/25 %), aligned to the
  granularity, interpolated in between. Memory-bound layers (late 3×3 convs at batch 1,
  depthwise convs) show that they save more time per MAC than compute-bound ones, and lopsided
  shapes that they run slower than balanced ones at equal MACs.

The whole model's latency is predicted as rest + scale × (the layers' latency): both fitted to
the whole model timed at the same uniform widths, so the prediction is anchored on real graphs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..graph.flops import ModelCost, count
from ..graph.groups import GroupAnalysis, predict_shapes
from ..graph.image_input import ImageInput
from ..graph.ops import rule
from ..graph.shapes import random_feed, random_input
from ..graph.slice import slice_model
from .bench import device_name, time_interleaved

__all__ = [
    "LatencyModel",
    "LayerTable",
    "LocalCache",
    "Store",
    "cache_dir",
    "entry_digest",
    "measure_granularity",
    "measure_latency",
    "measure_with_trials",
    "scaled_width",
    "structure_digest",
    "time_models",
    "timed_convs",
]

log = logging.getLogger(__name__)

_FRACTIONS = (1.0, 0.75, 0.5, 0.25)  # depthwise tables and the whole-graph calibration
_GRID = (1.0, 0.5, 0.25)  # per axis of a conv's (out, in) table
_PROBE_WIDTHS = (64, 62, 60, 56, 48)
# timing per variant: medians of 5 to 15 runs, so a layer's nine grid points cost about a second
# at most (benchmarks/overhead.py prints what the tables cost a first run)
_BUDGET_S = 0.1
_MOST_RUNS = 15


def cache_dir() -> Path:
    """Where measured tables are kept: $ONNXPRUNE_CACHE_DIR, else ~/.cache/onnxprune."""
    return Path(os.environ.get("ONNXPRUNE_CACHE_DIR") or Path.home() / ".cache" / "onnxprune")


class Store(Protocol):
    """Where measurements come from: measured here and cached (``LocalCache``), or read from a
    table measured on another device (``device_table.TableFile``)."""

    device: str  # the device's name, as the report gives it
    provider: str  # "cpu" or "cuda"
    threads: int
    batch: int

    def value(self, kind: str, key: dict, measure: Callable[[], Any], what: str) -> Any:
        """The measurement ``kind`` ("granularity", "layer", "model") at ``key``; ``what`` names
        it for a person. ``measure()`` takes it on this machine where the store may."""

    def finish(self) -> None:
        """Keep what was measured."""


def entry_digest(kind: str, key: dict) -> str:
    return hashlib.sha1(json.dumps({"kind": kind, **key}, sort_keys=True).encode()).hexdigest()


class LocalCache:
    """Measured on this machine, kept in a JSON file keyed by what each value depends on (the
    device, onnxruntime's version, threads and batch too); unreadable or unwritable is fine."""

    def __init__(self, device: str, threads: int, batch: int = 1) -> None:
        self.provider, self.threads, self.batch = device, threads, batch
        self.device = device_name(device)
        self.path = cache_dir() / "latency.json"
        try:
            self.entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.entries = {}
        self.dirty = False

    def device_key(self) -> dict:
        import onnxruntime

        return {"device": self.device, "provider": self.provider, "ort": onnxruntime.__version__,
                "threads": self.threads, "batch": self.batch}

    def value(self, kind: str, key: dict, measure: Callable[[], Any], what: str) -> Any:
        digest = entry_digest(kind, {**key, **self.device_key()})
        if digest not in self.entries:
            self.entries[digest] = measure()
            self.dirty = True
        return self.entries[digest]

    def finish(self) -> None:
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)
            self.dirty = False
        except OSError as err:
            log.debug("latency cache not saved: %s", err)


def _conv_model(attrs: list[onnx.AttributeProto], x_shape: tuple[int, ...], cout: int, cin: int,
                kernel: tuple[int, ...], group: int, bias: bool, seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    # uniform float32 draws: timings do not depend on the values, and these are cheap to make
    weight = rng.random((cout, cin // group, *kernel), dtype=np.float32) - 0.5
    inits = [numpy_helper.from_array(weight, "w")]
    inputs = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.random(cout, dtype=np.float32) - 0.5, "b"))
        inputs.append("b")
    kept = [a for a in attrs if a.name != "group"]
    node = helper.make_node("Conv", inputs, ["y"], group=group)
    node.attribute.extend(kept)
    graph = helper.make_graph(
        [node], "layer", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [x_shape[0], cin, *x_shape[2:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


@functools.lru_cache(maxsize=8)  # a layer's grid points share three input shapes; onnxruntime only reads them
def _feed(shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    return {"x": random_input(shape)}


def _runs_for(ms_estimate: float) -> int:
    return int(np.clip(_BUDGET_S * 1e3 / max(ms_estimate, 1e-3), 5, _MOST_RUNS))


def _time(entries, device: str, threads: int) -> list[float]:
    # one warm-up run each: the first run of a session allocates its buffers, later ones are alike
    return [float(np.median(ms)) for ms in time_interleaved(entries, device, threads, warmup=1, runs=_runs_for)]


def time_models(models: list[onnx.ModelProto], feed: dict[str, np.ndarray], device: str, threads: int,
                repeats: int = 1) -> list[list[float]]:
    """Median milliseconds of each model on the same inputs, timed round-robin in one process
    (one session each): ``repeats`` consecutive stretches, a list of medians each, so the spread
    between them shows the timing noise."""
    samples = time_interleaved([(m, feed) for m in models], device, threads, warmup=2,
                               runs=lambda ms: _runs_for(ms) * repeats)
    runs = len(samples[0]) // repeats
    return [[float(np.median(ms[r * runs : (r + 1) * runs])) for ms in samples] for r in range(repeats)]


def measure_granularity(store: Store) -> int:
    """The channel step the store's device runs conv kernels fastest at (see the module docstring)."""
    device, threads, batch = store.provider, store.threads, store.batch

    def measure() -> int:
        entries = []
        for width in _PROBE_WIDTHS:
            conv = _conv_model([helper.make_attribute("pads", [1, 1, 1, 1])], (batch, width, 28, 28),
                               width, width, (3, 3), 1, True)
            graph = conv.graph
            second = helper.make_node("Conv", ["y", "w"], ["z"], pads=[1, 1, 1, 1])
            graph.node.append(second)
            del graph.output[:]
            graph.output.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
            entries.append((conv, _feed((batch, width, 28, 28))))
        medians = np.median([_time(entries, device, threads) for _ in range(3)], axis=0)
        base = medians[0]
        step = 1
        for width, ms in zip(_PROBE_WIDTHS[1:], medians[1:]):
            ideal_saving = 1 - (width / _PROBE_WIDTHS[0]) ** 2
            if base - ms < 0.5 * ideal_saving * base:  # misaligned: most of the saving is lost
                power = width & -width
                step = max(step, min(2 * power, 16))
        log.info("width granularity on %s: %d (probe %s ms)", device_name(device), step,
                 ", ".join(f"{w}:{m:.3f}" for w, m in zip(_PROBE_WIDTHS, medians)))
        return step

    step = int(store.value("granularity", {"probe": _PROBE_WIDTHS}, measure, "the width step"))
    store.finish()
    return step


@dataclass(frozen=True)
class LayerTable:
    """A conv's latency on a grid of (output, input) channel counts.

    Two axes, not MACs alone: at equal MACs a lopsided conv (256 to 16 channels) runs slower than
    a balanced one (64 to 64), and pruning one side of a layer makes exactly such shapes. Depthwise
    convs have one axis (input = output = group). Outside the grid, latency scales with MACs.
    """

    node: str
    weight: str  # the initializer whose shape says the widths: (out, in / group, kh, kw)
    depthwise: bool
    outs: tuple[int, ...]  # ascending
    ins: tuple[int, ...]  # ascending; () for depthwise
    ms: tuple[tuple[float, ...], ...]  # ms[o][i]; depthwise: ms[o][0]

    def at(self, out: int, inp: int) -> float:
        o = float(np.clip(out, self.outs[0], self.outs[-1]))
        row = [r[0] for r in self.ms]
        if self.depthwise:
            return float(np.interp(o, self.outs, row)) * out / o
        i = float(np.clip(inp, self.ins[0], self.ins[-1]))
        column = [float(np.interp(i, self.ins, r)) for r in self.ms]
        return float(np.interp(o, self.outs, column)) * (out * inp) / (o * i)

    def widths(self, shapes: dict[str, tuple[int, ...]], group: int) -> tuple[int, int]:
        w = shapes[self.weight]
        return w[0], w[0] if self.depthwise else w[1] * group


@dataclass(frozen=True)
class LatencyModel:
    """Predicted latency of the model at any widths: offset + scale × (the layers' tables)."""

    device: str
    threads: int
    batch: int
    granularity: int
    layers: dict[str, LayerTable]
    groups: dict[str, int]  # a conv's ``group`` attribute, for the widths of grouped ones
    rate_ms_per_mac: float  # for MAC nodes without a table (Gemm, MatMul, blocked grouped convs)
    scale: float
    rest_ms: float  # may be negative, see _fit
    original_ms: float
    narrowest: float = 0.0  # the layers' sum at the narrowest widths the fit was measured at

    def predict(self, cost: ModelCost, shapes: dict[str, tuple[int, ...]]) -> float:
        """Latency of the model whose node costs and shapes these are (``groups.predict_shapes``)."""
        total = 0.0
        for node in cost.nodes:
            table = self.layers.get(node.name)
            if table is not None:
                total += table.at(*table.widths(shapes, self.groups.get(node.name, 1)))
            elif node.macs:
                total += self.rate_ms_per_mac * node.macs
        if total < self.narrowest:
            # below the measured range a negative offset would run the line to zero (a fresh
            # machine's fit once called 0.1 % of the latency reachable): scale down from its end
            return (self.rest_ms + self.scale * self.narrowest) * total / self.narrowest
        return max(self.rest_ms + self.scale * total, 1e-3 * self.original_ms)


def scaled_width(channels: int, fraction: float, step: int) -> int:
    """``fraction`` of a group's channels on the step (at least one step; narrow groups stay whole)."""
    if fraction == 1.0 or channels <= step:
        return channels
    return max(step, int(round(channels * fraction / step)) * step)


def _conv_points(node: onnx.NodeProto, analysis: GroupAnalysis, step: int, batch: int):
    """((out, in), model, feed) for each size the layer's table is measured at, and the axes."""
    shapes = analysis.shapes
    x_shape = (batch, *shapes[node.input[0]][1:])
    w_shape = shapes[node.input[1]]
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    cout, cin, kernel = w_shape[0], x_shape[1], tuple(w_shape[2:])
    depthwise = group > 1 and group == cin and w_shape[1] == 1
    bias = len(node.input) > 2
    if depthwise:
        outs = sorted({scaled_width(cout, f, step) for f in _FRACTIONS})
        grid = [(o, o) for o in outs]
        ins: list[int] = []
    elif group > 1:  # grouped convs are not pruned through; one point is enough
        outs, ins, grid = [cout], [cin], [(cout, cin)]
    else:
        outs = sorted({scaled_width(cout, f, step) for f in _GRID})
        ins = sorted({scaled_width(cin, f, step) for f in _GRID})
        grid = [(o, i) for o in outs for i in ins]
    points = []
    for out, inp in grid:
        g = out if depthwise else group
        model = _conv_model(list(node.attribute), x_shape, out, inp, kernel, g, bias)
        points.append(((out, inp), model, _feed((batch, inp, *x_shape[2:]))))
    return points, outs, ins, depthwise, group


def measure_latency(model: onnx.ModelProto, analysis: GroupAnalysis, image: ImageInput, store: Store,
                    granularity: int = 1, progress: Callable[[int, int], None] | None = None) -> LatencyModel:
    """Latency tables for every Conv that a prunable group reaches, calibrated on the whole graph
    sliced to uniform widths, from ``store`` (measured on its device where it may)."""
    raw = _layer_tables(model, analysis, store, granularity, progress)
    variants = [{g.id: scaled_width(g.channels, f, granularity) for g in analysis.prunable} for f in _FRACTIONS[1:]]
    # by the graph's structure (timings do not depend on weight values), so the same model and
    # store give the same selection, and a table profiled elsewhere matches this run's model
    key = {"model": structure_digest(model), "granularity": granularity}
    latency, _ = _calibrated(raw, model, analysis, image, store, variants, "model", key, repeats=1)
    return latency


def measure_with_trials(model: onnx.ModelProto, analysis: GroupAnalysis, image: ImageInput, store: Store,
                        granularity: int, trials: Callable[[LatencyModel], list[dict[int, int]]], repeats: int,
                        progress: Callable[[int, int], None] | None = None
                        ) -> tuple[LatencyModel, list[list[float]] | None]:
    """The latency tables, calibrated on the whole graph at the widths ``trials`` asks for given
    the uncalibrated tables (a calibration's offset and scale change no ranking, so the trials
    need not wait for it); with the timings, ``repeats`` × [original, *trials] milliseconds, or
    None where the store's device is not this one."""
    raw = _layer_tables(model, analysis, store, granularity, progress)
    variants = trials(raw)
    key = {"model": structure_digest(model), "widths": [sorted(w.items()) for w in variants], "repeats": repeats}
    return _calibrated(raw, model, analysis, image, store, variants, "steps", key, repeats)


def _layer_tables(model: onnx.ModelProto, analysis: GroupAnalysis, store: Store, granularity: int,
                  progress: Callable[[int, int], None] | None) -> LatencyModel:
    """The tables, with the layers' sum as the prediction (no calibration yet)."""
    device, threads, batch = store.provider, store.threads, store.batch
    convs = timed_convs(model, analysis)
    layers: dict[str, LayerTable] = {}
    groups: dict[str, int] = {}
    for i, node in enumerate(convs):
        points, outs, ins, depthwise, group = _conv_points(node, analysis, granularity, batch)
        key: dict[str, Any] = {"grid": [p[0] for p in points], "x": list(analysis.shapes[node.input[0]][1:]),
               "w": list(analysis.shapes[node.input[1]][2:]), "bias": len(node.input) > 2,
               "attrs": sorted(str(helper.get_attribute_value(a)) + a.name for a in node.attribute)}
        what = (f"Conv {node.name!r} ({key['x'][0]} channels of {'x'.join(map(str, key['x'][1:]))}, "
                f"{'x'.join(map(str, key['w']))} kernel, width step {granularity})")
        ms = store.value("layer", key, lambda: _time([(p[1], p[2]) for p in points], device, threads), what)
        by_size = {tuple(p[0]): m for p, m in zip(points, ms)}
        if depthwise:
            grid = tuple((by_size[(o, o)],) for o in outs)
        else:
            grid = tuple(tuple(by_size[(o, i)] for i in ins) for o in outs)
        layers[node.name] = LayerTable(node.name, node.input[1], depthwise, tuple(outs), tuple(ins), grid)
        groups[node.name] = group
        if progress:
            progress(i + 1, len(convs))
    cost, shapes = analysis.cost, analysis.shapes
    table_macs = sum(n.macs for n in cost.nodes if n.name in layers)
    raw = LatencyModel(store.device, threads, batch, granularity, layers, groups, 0.0, 1.0, 0.0, 0.0)
    rate = raw.predict(cost, shapes) / table_macs if table_macs else 0.0
    return LatencyModel(store.device, threads, batch, granularity, layers, groups, rate, 1.0, 0.0, 0.0)


def _calibrated(raw: LatencyModel, model: onnx.ModelProto, analysis: GroupAnalysis, image: ImageInput, store: Store,
                variants: list[dict[int, int]], kind: str, key: dict, repeats: int
                ) -> tuple[LatencyModel, list[list[float]] | None]:
    """Calibrate on the whole graph: the original and the model sliced to each of ``variants``
    (widths by group), timed side by side. Layers timed alone pay call overhead and layout
    reorders that a whole graph does not; a least-squares fit of offset + scale × (the layers'
    sum) to these timings removes both."""
    cost, shapes = analysis.cost, analysis.shapes
    predicted = [raw.predict(cost, shapes)]
    for widths in variants:
        sliced_shapes = predict_shapes(analysis, widths)
        predicted.append(raw.predict(count(model, sliced_shapes), sliced_shapes))

    def measure_whole() -> list[float] | list[list[float]]:
        sliced = [model] + [slice_model(model, analysis, {gid: np.arange(w) for gid, w in widths.items()},
                                        annotate=False) for widths in variants]
        runs = time_models(sliced, random_feed(image, store.batch), store.provider, store.threads, repeats)
        return runs[0] if kind == "model" else runs  # "model" entries predate repeats

    measured = store.value(kind, key, measure_whole, "this model as a whole")
    store.finish()
    runs = None if measured is None else ([measured] if kind == "model" else measured)
    base_raw = predicted[0]
    fields = (store.device, raw.threads, raw.batch, raw.granularity, raw.layers, raw.groups, raw.rate_ms_per_mac)
    if runs is None:  # a table that covers every layer but was not profiled on this model (or these widths)
        if kind == "model":
            log.info("latency tables for %d layers from %s (not calibrated on this whole model: its layers' sum "
                     "is the prediction)", len(raw.layers), store.device)
        return LatencyModel(*fields, 1.0, 0.0, base_raw, min(predicted)), None
    medians = np.median(np.asarray(runs), axis=0)
    scale, rest = _fit(np.asarray(predicted), medians)
    log.info("latency tables for %d layers on %s: model %.2f ms; whole-graph fit: %.2f ms + %.2f × layers",
             len(raw.layers), store.device, medians[0], rest, scale)
    return LatencyModel(*fields, scale, rest, float(medians[0]), min(predicted)), runs


def timed_convs(model: onnx.ModelProto, analysis: GroupAnalysis) -> list[onnx.NodeProto]:
    """The convs that get a latency table: those a prunable group reaches."""
    prunable = {g.id for g in analysis.prunable}
    touched = {s.node for s in analysis.slots if set(s.segments) & prunable}
    return [n for n in model.graph.node if rule(n.op_type).timed_per_layer and n.name in touched
            and len(analysis.shapes.get(n.input[0], ())) == 4]


def structure_digest(model: onnx.ModelProto) -> str:
    """A hash of the graph and its weights' names, types and shapes, not their values: what a
    timing depends on (BatchNorm put back with this data's statistics times like any other)."""
    h = hashlib.sha1()
    for node in model.graph.node:
        h.update(node.SerializeToString(deterministic=True))
    for init in model.graph.initializer:
        h.update(f"{init.name}:{init.data_type}:{list(init.dims)}".encode())
    for value in (*model.graph.input, *model.graph.output):
        h.update(value.SerializeToString(deterministic=True))
    return h.hexdigest()


def _fit(predicted: np.ndarray, measured: np.ndarray) -> tuple[float, float]:
    """scale > 0 and offset with measured ≈ offset + scale × predicted, exact at the original.

    The offset may be negative: it then takes off the per-call overhead that each layer timed
    alone carries.
    """
    proportional = (measured[0] / predicted[0] if predicted[0] else 1.0), 0.0
    if len(predicted) < 2 or np.ptp(predicted) <= 0:
        return proportional
    scale, _ = np.polyfit(predicted, measured, 1)
    offset = measured[0] - scale * predicted[0]
    narrowest = int(np.argmin(predicted))
    # a line that grows as layers shrink, or that runs below half of what the narrowest model
    # measured, is noise, not a fit
    if scale <= 0 or offset + scale * predicted[narrowest] < 0.5 * measured[narrowest]:
        return proportional
    return float(scale), float(offset)
