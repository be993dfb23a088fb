"""Latency tables measured on one device and used on another: ``onnxprune profile-device`` writes
them, ``--latency-table FILE`` prunes with them.

The file holds the measurements hardware-aware widths need, keyed exactly as the local cache
keys them (without the device, which the file names once): the width step, each conv's latency
on its grid of widths, and the whole model timed at uniform widths. So a table profiled on a
machine and a run that measures on that same machine choose the same widths. A model whose
layers the table does not cover is refused with one line; a model profiled only layer by layer
(its shapes came from other models) is predicted from its layers' sum, uncalibrated.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import OnnxpruneError
from ..graph.batchnorm import with_batchnorm
from ..graph.groups import analyze_groups
from ..graph.load import load
from ..graph.write import atomic_write_bytes
from .latency import LocalCache, entry_digest, measure_granularity, measure_latency

__all__ = ["FORMAT", "VERSION", "Recorder", "TableFile", "profile_device"]

log = logging.getLogger(__name__)

FORMAT = "onnxprune-latency-table"
VERSION = 1


class TableFile:
    """A profiled table as a read-only store: every layer must be in it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            content = json.loads(self.path.read_text())
        except FileNotFoundError:
            raise OnnxpruneError(f"--latency-table {self.path}: no such file") from None
        except (OSError, ValueError) as err:
            raise OnnxpruneError(f"--latency-table {self.path} is not a latency table ({err})") from None
        if not isinstance(content, dict) or content.get("format") != FORMAT:
            raise OnnxpruneError(f"--latency-table {self.path} is not a latency table written by onnxprune "
                                 "profile-device")
        if content.get("version") != VERSION:
            raise OnnxpruneError(f"--latency-table {self.path} is version {content.get('version')} of the format; "
                                 f"this onnxprune reads version {VERSION}: profile the device again")
        where = content["measured_on"]
        self.device, self.provider = where["device"], where["provider"]
        self.threads, self.batch = int(where["threads"]), int(where["batch"])
        self.measured_on = where
        self.entries: dict[str, Any] = {d: e["value"] for d, e in content["entries"].items()}

    def value(self, kind: str, key: dict, measure: Callable[[], Any], what: str) -> Any:
        found = self.entries.get(entry_digest(kind, key))
        if found is None and kind not in ("model", "steps"):  # whole-model timings: this model only
            raise OnnxpruneError(
                f"--latency-table {self.path} has no measurement of {what}; profile this model on that device: "
                f"onnxprune profile-device MODEL.onnx --threads {self.threads} --batch {self.batch} --out FILE")
        return found

    def finish(self) -> None:
        pass


class Recorder(LocalCache):
    """Measures on this machine (through the local cache) and keeps each value for the file."""

    def __init__(self, device: str, threads: int, batch: int) -> None:
        super().__init__(device, threads, batch)
        self.recorded: dict[str, dict[str, Any]] = {}

    def value(self, kind: str, key: dict, measure: Callable[[], Any], what: str) -> Any:
        found = super().value(kind, key, measure, what)
        self.recorded[entry_digest(kind, key)] = {"kind": kind, "what": what, "value": found}
        return found

    def content(self, models: list[str]) -> dict[str, Any]:
        import onnxruntime

        return {
            "format": FORMAT, "version": VERSION, "onnxprune": __version__,
            "measured_on": {
                "device": self.device, "provider": self.provider, "threads": self.threads, "batch": self.batch,
                "onnxruntime": onnxruntime.__version__, "host": platform.node(),
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            },
            "models": models,
            "entries": self.recorded,
        }


def profile_device(models: Sequence[str | Path], out: str | Path, device: str = "cpu", threads: int | None = None,
                   batch: int = 1, input_size: tuple[int, int] | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Measure the width step and every prunable conv's latency table of ``models`` on this
    machine, as a run with ``--latency-table`` on another machine will need them; write ``out``."""
    recorder = Recorder(device, threads or os.cpu_count() or 1, batch)
    step = measure_granularity(recorder)
    layers = 0
    for path in models:
        loaded = load(path, input_size)
        # the graph a pruning run times: BatchNorm put back after folded convs
        work = with_batchnorm(loaded, analyze_groups(loaded).shapes, None)
        analysis = analyze_groups(work)
        tick = None
        if progress is not None:
            stage, report = f"profiling {Path(path).name}", progress
            tick = lambda d, t: report(stage, d, t)  # noqa: E731
        table = measure_latency(work.model, analysis, work.image, recorder, granularity=step, progress=tick)
        layers += len(table.layers)
        log.info("%s: %d layer tables, %.2f ms as a whole", Path(path).name, len(table.layers), table.original_ms)
    content = recorder.content([Path(p).name for p in models])
    atomic_write_bytes(Path(out), (json.dumps(content, indent=1) + "\n").encode())
    return {"out": str(out), "device": recorder.device, "provider": device, "threads": recorder.threads,
            "batch": batch, "width_step": step, "layers": layers, "models": len(models)}
