"""Before the first round: the data listed and split, the task its quality is measured by, the
original's outputs (the teacher), where and how fine-tuning runs, BatchNorm where the exporter
folded it — settled once into the frozen ``Run`` every stage reads."""

from __future__ import annotations

import logging
import os
from math import ceil
from pathlib import Path

import numpy as np

from ..data.augment import judging_views, resolve_mode
from ..data.sources import CENTRE, Dataset, bounded, check_labels, joined, load_data, small_data_note, split
from ..errors import OnnxpruneError
from ..graph.batchnorm import needs_batchnorm, shapes_with_inserted, with_batchnorm
from ..graph.flops import count
from ..graph.groups import analyze_groups
from ..graph.load import LoadedModel
from ..graph.runtime import fixed_at_one, run_batched
from ..measure.heads import find_head
from ..measure.roles import OutputRole, find_roles
from ..measure.tasks import MEASURED_BY, Task, TaskSettings, infer_task, load_metric
from ..options import PruneOptions
from ..torchview.devices import run_devices
from ..torchview.distributed import join
from ..torchview.finetune import OutputKind, Targets, TrainSettings, epoch_steps, precision_for
from ..torchview.loader import default_workers
from ..torchview.memory import plan_memory
from ..torchview.teacher import Teacher, worth_caching
from .calibration import calibrate
from .checkpoint import Checkpoints, fingerprint
from .context import Data, Hardware, Models, Progress, Run, Training
from .judging import HeldOut, Judge
from .lossless import watched_tensors
from .planner import planned_rounds
from .recover import DEFAULT_EPOCHS, open_ended

__all__ = ["prepare", "MIN_JUDGED"]

log = logging.getLogger(__name__)

MIN_JUDGED = 8  # held-out images each half needs before the decisions and the report split them
# how many inputs the held-out images are judged as, where they are few and the original is the
# reference (``judge_views``): about JUDGED_ITEMS, at most MOST_VIEWS an image, and no more than
# a judgement may cost (multiply-adds of one pass, bytes of the original's outputs kept)
JUDGED_ITEMS = 192
MOST_VIEWS = 12
JUDGE_MACS = 4e11
JUDGE_BYTES = 1 << 29
def prepare(loaded: LoadedModel, data: str | Path | Dataset | np.ndarray, o: PruneOptions,
            progress: Progress) -> Run:
    """List and split the data, run the original on the held-out and calibration inputs (the
    teacher), set up where and how fine-tuning runs, and add BatchNorm where it was folded."""
    image = loaded.image
    device, ort_device = run_devices(o.device)
    where = join(device)
    dataset = _dataset(data, loaded, o)
    if o.val_data:
        train = dataset
        val = bounded(load_data(o.val_data, image, o.preprocess, o.labels, flag="--val-data"), o.val_images, o.seed)
    else:
        train, val = split(dataset, o.val_split, o.seed, o.val_images)
    for what, part in (("--labels " + str(o.labels), dataset), ("--val-data", val)):
        check_labels(part, loaded.output_axes[0].rest if loaded.output_axes else (), what)
    if o.unlabeled:  # after the split: these images are learnt from, never judged on
        extra = load_data(o.unlabeled, image, o.preprocess, None, flag="--unlabeled")
        log.info("--unlabeled: %d more images to learn from the original on", len(extra))
        train = joined(train, extra)
    n_calib = min(len(train), o.calibration_images)
    log.info("data: %d training and %d validation %s, %d calibrate", len(train), len(val), dataset.kind, n_calib)
    note = small_data_note(len(train), len(val), o.drop_limit)
    if note:
        log.warning(note)
    task, task_settings = _task(loaded, o, dataset.labels is not None)
    calib = train.subset(np.arange(n_calib)).inputs  # bounded: the one set held in memory
    analysis = analyze_groups(loaded)
    held = held_out(loaded, val, o, count(loaded.model, analysis.shapes).macs)
    # one pass over the calibration images: the teacher's outputs, the statistics of convs whose
    # BatchNorm was folded and the extremes the lossless pass reads (the work model only adds
    # BatchNorm that computes the identity, so its tensors of these names hold the same values)
    folded = [c.output[0] for c in needs_batchnorm(loaded.model, analysis.shapes)]
    watched = watched_tensors(loaded.model, analysis) if o.lossless else {}
    calibration = calibrate(loaded.model, image.name, calib, folded, watched, shapes=analysis.shapes)
    teacher_calib = calibration.outputs
    work = with_batchnorm(loaded, analysis.shapes, (calibration.mean, calibration.var))
    work_groups = analysis if work is loaded else analyze_groups(work, shapes_with_inserted(work.model, analysis.shapes))
    if where.world > 1 and device.startswith("cuda"):
        device = f"cuda:{where.local}"
    # the same micro-batch whatever the processes: scoring batches (and so the widths) must not depend on them
    memory = plan_memory(work.model, work_groups.shapes, o.batch_size, device,
                         most=1 if fixed_at_one(loaded.model) else None)
    precision = precision_for(o.precision, device)
    settings = TrainSettings(
        lr=o.lr, batch_size=o.batch_size, micro_batch=memory.micro_batch, device=device,
        augment=resolve_mode(o.augment, held.reference[0].shape, train.labels is not None),
        workers=default_workers() if o.workers is None else o.workers, precision=precision,
        channels_last=device.startswith("cuda") and image.layout == "NCHW", rank=where.rank, world=where.world,
        feature_hints=o.feature_hints, output_kinds=output_kinds(task_settings.roles))
    if where.world > o.batch_size:
        raise OnnxpruneError(f"--batch-size {o.batch_size} is smaller than the {where.world} processes; "
                             "each needs at least one image of every batch")
    key = fingerprint(loaded.model, o, train, val) if o.checkpoint_dir else ""
    round_steps = o.round_steps if o.round_steps is not None else min(20, epoch_steps(len(train), o.batch_size))
    teacher = Teacher(loaded, in_torch=o.feature_hints)  # hints read the teacher's own maps
    epochs = DEFAULT_EPOCHS if o.epochs is None else o.epochs  # open-ended: at least as many, in most runs
    seen = (planned_rounds(o) * round_steps + ceil(epochs * epoch_steps(len(train), o.batch_size))) * o.batch_size
    # feature hints need the teacher's own forward, for its maps
    if not o.feature_hints and worth_caching(settings.augment, seen, len(train), sum(t[0].nbytes for t in held.reference),
                                             where.world):
        teacher.build_cache(loaded, train, o.checkpoint_dir)
    return Run(
        options=o,
        model=Models(loaded, work, work_groups),
        data=Data(train, val, calib, Targets(teacher_calib, None if train.labels is None else train.labels[:n_calib],
                                             settings.output_kinds), calibration.extremes),
        judge=Judge(held, loaded.image.name, o.drop_limit, o.seed, task, task_settings),
        teacher=teacher,
        training=Training(settings, round_steps),
        hardware=Hardware(device, ort_device, o.bench_threads or os.cpu_count() or 1, where),
        progress=progress, checkpoints=Checkpoints(o.checkpoint_dir, key, writer=where.main),
    )


def held_out(loaded: LoadedModel, val: Dataset, o: PruneOptions, macs: int) -> HeldOut:
    """The held-out images as the pruned model is judged on them, with the original's outputs:
    where they are few and the original is the reference (no labels), each image and shifts of it
    (``judge_views``), so a judgement rests on more than a handful of inputs; and, where rounds or
    the final fine-tuning choose by quality, the images they choose on (the others report)."""
    image = loaded.image.name
    reference = run_batched(loaded.model, image, val)
    views = judge_views(o, len(val), val.labels is not None, macs, sum(r[0].nbytes for r in reference))
    items, image_of = val, np.arange(len(val))
    if views > 1:
        seen = [v for k in range(len(val)) for v in judging_views(views, o.seed, k)[1:]]
        shifted = val.seen_as(np.repeat(np.arange(len(val)), views - 1), seen)
        image_of = np.r_[image_of, np.repeat(image_of, views - 1)]  # the images themselves first
        extra = run_batched(loaded.model, image, shifted)
        reference = [np.concatenate([r, e]) for r, e in zip(reference, extra)]
        items = val.seen_as(image_of, [CENTRE] * len(val) + seen)
        log.info("judging on %d inputs: the %d held-out images, each also shifted %d ways", len(items), len(val),
                 views - 1)
    judged = None
    chooses = "the budget chooses rounds" if o.budget_goal else "the final fine-tuning chooses when to stop"
    if (o.budget_goal or open_ended(o)) and len(val) >= 2 * MIN_JUDGED:
        # decisions are made on half the held-out images, the kept model reported on the other half
        judged = np.sort(np.random.default_rng([o.seed, 7]).permutation(len(val))[: len(val) // 2])
        log.info("%s on %d held-out images and reports the kept model on the other %d", chooses, len(judged),
                 len(val) - len(judged))
    elif o.budget_goal or open_ended(o):
        log.warning("%s on the same %d held-out images the result is reported on (%d or more would be split)",
                    chooses, len(val), 2 * MIN_JUDGED)
    return HeldOut(items, reference, image_of, judged)


def judge_views(o: PruneOptions, images: int, labelled: bool, macs: int, output_bytes: int) -> int:
    """Inputs each held-out image is judged as: --judge-views, or one where labels judge (a shift
    may move what they name) or the images are many; else about ``JUDGED_ITEMS`` in all, at most
    ``MOST_VIEWS`` an image, within ``JUDGE_MACS`` a pass and ``JUDGE_BYTES`` of the original's
    outputs (``output_bytes`` an input)."""
    if o.judge_views is not None:
        return o.judge_views
    if labelled or images == 0:
        return 1
    wanted = round(JUDGED_ITEMS / images)
    affordable = min(JUDGE_MACS / max(macs * images, 1), JUDGE_BYTES / max(output_bytes * images, 1))
    return int(max(1, min(wanted, MOST_VIEWS, affordable)))


def output_kinds(roles: tuple[OutputRole, ...]) -> tuple[OutputKind, ...]:
    """How fine-tuning distils each output (batch first), from its role: class scores by KL over
    their classes, embeddings by cosine, everything else by per-feature MSE."""
    return tuple(("classes", 1 + r.class_axis) if r.role in ("probabilities", "logits")
                 else ("embedding", 1) if r.role == "embedding" else ("features", -1) for r in roles)


def _task(loaded: LoadedModel, o: PruneOptions, labels: bool) -> tuple[Task, TaskSettings]:
    """The task the held-out quality is measured by: named, or inferred from the first output."""
    samples = [axes.rest for axes in loaded.output_axes]
    roles = find_roles(loaded.model, samples) if loaded.output_axes else ()
    head = o.box_layout or find_head(roles, samples)
    settings = TaskSettings(None if o.task == "auto" else o.task, head if head else None, o.mask_threshold, o.blank,
                            o.metric, roles, (loaded.image.height, loaded.image.width))
    if o.metric:
        load_metric(o.metric)  # refused now, not after the rounds
    first = loaded.output_axes[0] if loaded.output_axes else None
    sample = first.rest if first is not None else ()
    task = settings.task or infer_task(loaded.model, sample, first is not None and first.axis != 0 and first.fold == 1,
                                       labels, find_head(roles, samples))
    if labels and task != "classify":
        raise OnnxpruneError(f"--labels are class indices, but the model's task is {task}; leave out --labels to "
                             "judge it against the original's own results")
    log.info("task: %s — --max-drop limits %s", task, MEASURED_BY[task] if not o.metric else o.metric)
    if len(roles) > 1:
        log.info("outputs: %s", "; ".join(f"{r.name} {r.role} ({r.why})" for r in roles))
    return task, settings


def _dataset(data: str | Path | Dataset | np.ndarray, loaded: LoadedModel, o: PruneOptions) -> Dataset:
    if isinstance(data, Dataset):
        return data
    if isinstance(data, np.ndarray):
        expected = loaded.image.shape(1)[1:]
        if data.ndim != 4 or tuple(data.shape[1:]) != expected:
            raise OnnxpruneError(f"data of shape {data.shape} does not fit the model's input (N, {expected})")
        return Dataset.of_array(data, image=loaded.image)
    return load_data(data, loaded.image, o.preprocess, o.labels)
