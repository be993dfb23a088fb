"""Resume after a kill: each finished pass (the lossless pass, every round, the latency
correction, the final fine-tuning; ``passes.PassManager`` saves them) leaves the model so far and
what the rounds recorded in a checkpoint folder, written atomically, and ``--resume`` starts
after the last one.

Every round draws its randomness from (seed, round) and nothing else, and the latency tables
come from their on-disk cache, so a resumed run ends with the same model as an uninterrupted one.
A checkpoint is used only for the same model, data and settings (its fingerprint); anything
else is refused with one line rather than silently mixed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import onnx

from ..data.sources import Dataset
from ..errors import OnnxpruneError
from ..graph.write import atomic_write_bytes
from ..options import PruneOptions
from ..report import Budget, LosslessCounts, RoundRecord

__all__ = ["FORMAT", "Checkpoint", "Checkpoints", "fingerprint"]

log = logging.getLogger(__name__)

FORMAT = 2  # 2: checkpoints name the pass (and the step within it), not a stage number
# settings that do not change the result: how it runs, not what it computes
_NEUTRAL = ("resume", "checkpoint_dir", "workers", "bench", "bench_runs", "bench_threads")


@dataclass(frozen=True)
class Checkpoint:
    pass_name: str  # the pass that finished, or that was under way (``step``)
    step: int | None  # the pass's steps done (round r), None where the pass finished
    name: str  # what finished, in words ("round 2/3")
    model: onnx.ModelProto
    records: tuple[RoundRecord, ...]
    freed: LosslessCounts  # the lossless pass's counts
    reached: bool
    budget: Budget | None = None  # where a budget-goal run's rounds stopped
    blocks: dict | None = None  # what --structure removed whole before the rounds (depth.DepthResult.as_dict)


def fingerprint(model: onnx.ModelProto, options: PruneOptions, train: Dataset, val: Dataset) -> str:
    """What a checkpoint must match: the model's bytes, the settings that change results, and
    which items train and validate."""
    h = hashlib.sha256(model.SerializeToString(deterministic=True))
    settings = {k: v for k, v in options.as_dict().items() if k not in _NEUTRAL}
    h.update(json.dumps(settings, sort_keys=True).encode())
    for part in (train, val):
        h.update(str(len(part)).encode())
        for name in part.names:
            h.update(name.encode())
        if part.labels is not None:
            h.update(part.labels.tobytes())
    return h.hexdigest()


class Checkpoints:
    """The checkpoint folder of one run; ``writer`` is False on every process but rank 0."""

    def __init__(self, folder: str | Path | None, key: str, writer: bool = True) -> None:
        self.folder = Path(folder) if folder else None
        self.key, self.writer = key, writer

    def exists(self) -> bool:
        return self.folder is not None and (self.folder / "state.json").is_file()

    def load(self) -> Checkpoint | None:
        """The last finished stage of an earlier run with the same fingerprint."""
        if self.folder is None:
            raise OnnxpruneError("--resume needs a checkpoint folder (the CLI keeps one in the report folder)")
        state_path = self.folder / "state.json"
        if not state_path.is_file():
            raise OnnxpruneError(f"--resume: no checkpoint in {self.folder}; a run leaves one after its first "
                                 "finished round")
        state = json.loads(state_path.read_text())
        if state.get("format") != FORMAT:
            raise OnnxpruneError(f"--resume: the checkpoint in {self.folder} was written by another version of "
                                 "onnxprune; rerun without --resume to start over")
        if state.get("fingerprint") != self.key:
            raise OnnxpruneError(f"--resume: the checkpoint in {self.folder} is of another model, data or settings; "
                                 "rerun with those, or without --resume to start over")
        model = onnx.load(str(self.folder / state["model"]))
        freed = LosslessCounts(**state["lossless"])
        records = tuple(RoundRecord(**r) for r in state["records"])
        log.info("resuming after %s (checkpoint in %s)", state["stage_name"], self.folder)
        budget = Budget(**state["budget"]) if state.get("budget") else None
        return Checkpoint(state["pass"], state["step"], state["stage_name"], model, records, freed, state["reached"],
                          budget, state.get("blocks"))

    def save(self, pass_name: str, step: int | None, name: str, model: onnx.ModelProto, records: list[RoundRecord],
             freed: LosslessCounts | None, reached: bool = True, budget: Budget | None = None,
             blocks: dict | None = None) -> None:
        """Record a finished pass (or ``step`` of one): the model file first, then state.json
        naming it, each renamed into place, so a kill at any instant leaves the previous
        checkpoint or this one."""
        if self.folder is None or not self.writer:
            return
        if freed is None:
            raise RuntimeError("a checkpoint is saved only after the lossless pass")
        self.folder.mkdir(parents=True, exist_ok=True)
        # named by pass and step, so no two saves in a row share a file: the previous one stays
        # whole until state.json names the new one
        model_name = f"{pass_name.replace(' ', '-')}-{'done' if step is None else step}.onnx"
        atomic_write_bytes(self.folder / model_name, model.SerializeToString())
        state = {
            "format": FORMAT, "fingerprint": self.key, "pass": pass_name, "step": step, "stage_name": name,
            "model": model_name,
            "lossless": asdict(freed),
            "records": [asdict(r) for r in records], "reached": reached,
            "budget": asdict(budget) if budget else None, "blocks": blocks,
        }
        atomic_write_bytes(self.folder / "state.json", (json.dumps(state, indent=1) + "\n").encode())
        for old in self.folder.glob("*.onnx"):
            if old.name != model_name:
                old.unlink(missing_ok=True)

    def clear(self) -> None:
        if self.folder is not None and self.writer:
            shutil.rmtree(self.folder, ignore_errors=True)
