"""How many samples torch may hold at once: the micro-batch, from the model's activations and the
memory this machine has.

``--batch-size`` is the batch an optimizer step sees. A detector's activations at 800×608 with
gradients are hundreds of MB a sample, so 32 of them do not fit beside everything else; fine-
tuning then accumulates gradients over micro-batches (the step is the same), and scoring,
verification and the teacher run micro-batch by micro-batch.

The estimate: one sample's activations (every float tensor the graph computes, at the run's input
size) times ``TRAIN_FACTOR`` for what autograd keeps and the backward pass makes, against a share
of the available memory (``ACTIVATION_SHARE`` of what the kernel or cgroup says is free, at most
``CPU_CEILING`` on the CPU so a run leaves the machine usable; on a GPU, of its free memory).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from ..errors import OnnxpruneError

__all__ = ["MemoryPlan", "plan_memory", "activation_bytes", "available_bytes", "TRAIN_FACTOR"]

log = logging.getLogger(__name__)

TRAIN_FACTOR = 2.0  # a margin over forward activations for what autograd keeps, BN and the optimizer
ACTIVATION_SHARE = 0.4
CPU_CEILING = 4 << 30  # bytes of activations one micro-batch may take on the CPU
_UNKNOWN_MEMORY = 8 << 30  # where the system does not say (not Linux)


@dataclass(frozen=True)
class MemoryPlan:
    """The micro-batch torch works in, and what it was sized from (for the log and report)."""

    micro_batch: int
    sample_bytes: int  # one sample's activations, forward
    budget_bytes: int  # what one micro-batch's training may take


def activation_bytes(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]]) -> int:
    """Bytes of every tensor the graph computes for one sample (float32; ``shapes`` at batch 1)."""
    computed = {o for node in model.graph.node for o in node.output if o}
    return int(sum(4 * int(np.prod(shape)) for name, shape in shapes.items() if name in computed))


def available_bytes(device: str = "cpu") -> int:
    """Memory free for this process now: the GPU's free memory, or the smaller of the kernel's
    MemAvailable and what the cgroup (a container's limit) leaves."""
    if device.startswith("cuda"):
        import torch

        free, _total = torch.cuda.mem_get_info(torch.device(device))
        return int(free)
    candidates = []
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
    limit, used = Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory.current")
    if limit.exists() and used.exists():
        text = limit.read_text().strip()
        if text != "max":
            candidates.append(int(text) - int(used.read_text().strip()))
    if not candidates and hasattr(os, "sysconf"):
        try:
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return max(min(candidates), 0) if candidates else _UNKNOWN_MEMORY


def plan_memory(model: onnx.ModelProto, shapes: dict[str, tuple[int, ...]], batch_size: int, device: str,
                available: int | None = None, most: int | None = None) -> MemoryPlan:
    """The largest micro-batch (at most ``batch_size``) whose training fits the budget; refused
    with what it needs when not even one sample fits."""
    sample = max(activation_bytes(model, shapes), 1)
    free = available_bytes(device) if available is None else available
    budget = int(ACTIVATION_SHARE * free)
    if not device.startswith("cuda"):
        budget = min(budget, CPU_CEILING)
    need = TRAIN_FACTOR * sample
    if need > ACTIVATION_SHARE * free:
        raise OnnxpruneError(
            f"one sample needs about {need / 2**30:.1f} GB to fine-tune at this input size and "
            f"{free / 2**30:.1f} GB is free on the {device.split(':')[0].upper()}; free memory, use a machine "
            "with more, or prune at a smaller --input-size where the model allows it")
    micro = int(max(1, min(batch_size, most or batch_size, budget // need)))  # ``most``: what the graph takes
    if micro < batch_size:
        log.info("memory: one sample's activations are %.0f MB; torch works in micro-batches of %d (%.1f GB "
                 "budget), accumulating to batches of %d", sample / 2**20, micro, budget / 2**30, batch_size)
    return MemoryPlan(micro, sample, budget)
