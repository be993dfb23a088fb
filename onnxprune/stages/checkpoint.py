"""Resume after a kill: each finished stage (the lossless pass, every round, the latency
correction, the final fine-tuning) leaves the model so far and what the rounds recorded in a
checkpoint folder, written atomically, and ``--resume`` starts after the last one.

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
from ..report import Budget, RoundRecord
from .lossless import LosslessResult

__all__ = ["FORMAT", "Checkpoint", "Checkpoints", "fingerprint"]

log = logging.getLogger(__name__)

FORMAT = 1
# settings that do not change the result: how it runs, not what it computes
_NEUTRAL = ("resume", "checkpoint_dir", "workers", "bench", "bench_runs", "bench_threads")


@dataclass(frozen=True)
class Checkpoint:
    stage: int  # 0: lossless pass, r: round r, then ``Checkpoints.CORRECTED``, ``Checkpoints.FINAL``
    name: str  # what finished, in words ("round 2/3")
    model: onnx.ModelProto
    records: tuple[RoundRecord, ...]
    freed: LosslessResult  # the lossless pass's counts
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

    CORRECTED = 10_000
    FINAL = 10_001

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
        if state.get("format") != FORMAT or state.get("fingerprint") != self.key:
            raise OnnxpruneError(f"--resume: the checkpoint in {self.folder} is of another model, data or settings; "
                                 "rerun with those, or without --resume to start over")
        model = onnx.load(str(self.folder / state["model"]))
        freed = LosslessResult(model, **state["lossless"])  # the report reads only its counts
        records = tuple(RoundRecord(**r) for r in state["records"])
        log.info("resuming after %s (checkpoint in %s)", state["stage_name"], self.folder)
        budget = Budget(**state["budget"]) if state.get("budget") else None
        return Checkpoint(state["stage"], state["stage_name"], model, records, freed, state["reached"], budget,
                          state.get("blocks"))

    def save(self, stage: int, name: str, model: onnx.ModelProto, records: list[RoundRecord],
             freed: LosslessResult, reached: bool = True, budget: Budget | None = None,
             blocks: dict | None = None) -> None:
        """Record a finished stage: the model file first, then state.json naming it, each
        renamed into place, so a kill at any instant leaves the previous checkpoint or this one."""
        if self.folder is None or not self.writer:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        model_name = f"stage-{stage}.onnx"
        atomic_write_bytes(self.folder / model_name, model.SerializeToString())
        state = {
            "format": FORMAT, "fingerprint": self.key, "stage": stage, "stage_name": name, "model": model_name,
            "lossless": {"dead": freed.dead, "folded": freed.folded, "constant_kept": freed.constant_kept},
            "records": [asdict(r) for r in records], "reached": reached,
            "budget": asdict(budget) if budget else None, "blocks": blocks,
        }
        atomic_write_bytes(self.folder / "state.json", (json.dumps(state, indent=1) + "\n").encode())
        for old in self.folder.glob("stage-*.onnx"):
            if old.name != model_name:
                old.unlink(missing_ok=True)

    def clear(self) -> None:
        if self.folder is not None and self.writer:
            shutil.rmtree(self.folder, ignore_errors=True)
