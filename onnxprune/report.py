"""The report of a pruning run: a typed ``Report`` for code, ``report.json`` for pipelines
(``Report.as_dict``, fields in ``docs/report.schema.json``), report.md and PNG plots for people."""

from __future__ import annotations

import io
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from . import __version__
from .measure.metrics import QualityDrop

__all__ = [
    "Report", "Macs", "Params", "Flops", "Widths", "LosslessCounts", "Quality", "Verification", "HardwareAware",
    "RoundRecord", "Budget", "Stage", "DataSizes", "Runtime", "render_markdown", "render_plots", "human", "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Macs:
    before: int
    after: int


@dataclass(frozen=True)
class Params(Macs):
    fraction: float  # after ÷ before


@dataclass(frozen=True)
class Flops(Params):
    target: int  # the most FLOPs the pruned model may keep


@dataclass(frozen=True)
class Widths:
    """Channels per group, named by its producers."""

    before: dict[str, int]
    after: dict[str, int]


@dataclass(frozen=True)
class LosslessCounts:
    dead_channels_removed: int = 0
    constant_channels_folded: int = 0
    constant_channels_kept: int = 0  # constant, but a padded consumer cannot absorb them


@dataclass(frozen=True)
class Quality:
    """Held-out quality of the original (``before``) and the pruned model (``metrics.compare_outputs``)."""

    before: dict[str, float]
    after: dict[str, float]
    validation_inputs: int
    drop: QualityDrop
    task: str = "regress"  # tasks.TASKS
    # 95 % intervals of the measure --max-drop limits, before and after (intervals.interval)
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    # each output's role and its measure's figure for the pruned model (the original's is 1.0)
    outputs: tuple[dict, ...] = ()


@dataclass(frozen=True)
class Verification:
    max_abs_error: float
    validation_inputs: int


@dataclass(frozen=True)
class HardwareAware:
    """The measured width step and latency tables the selector used."""

    device: str
    threads: int
    round_to: int
    layers_measured: int
    original_ms_measured: float
    predicted_fraction: float
    table: str | None = None  # --latency-table: measured on ``device``, not here
    step_candidates: tuple[dict, ...] = ()  # --round-to auto: each step tried, as width_step.StepCandidate
    step_reason: str | None = None  # why round_to won


@dataclass(frozen=True)
class RoundRecord:
    """One row of the trajectory; round 0 is the original model."""

    round: int
    flops: int
    params: int
    flops_fraction: float
    loss: float | None
    agreement: float | None  # top-1 agreement with the original on the held-out data (classifiers)
    latency_fraction_predicted: float | None = None
    quality_drop: float | None = None  # points lost on the held-out data by --max-drop's measure
    extra_steps: int = 0  # more fine-tuning given after the round broke the budget (budget goal)
    kept: bool = True  # False: the round broke the budget even so; the run kept the one before


@dataclass(frozen=True)
class Budget:
    """--max-drop as the goal: where the rounds stopped and why."""

    metric: str
    max_points: float
    minimize: str  # "flops" or "latency"
    kept_round: int  # 0: no round stayed within the budget
    stopped_after: int  # the last round tried
    reason: str


@dataclass(frozen=True)
class DataSizes:
    train: int
    validation: int
    labels: str | None
    calibration: int = 0  # training images scored on each round
    kind: str = "images"  # "images" (decoded as read) or "tensors" (.npy, memory-mapped)
    augment: str = "none"  # fine-tuning views (augment.MODES, auto settled)
    note: str | None = None  # what a small held-out share means for --max-drop (data.small_data_note)
    labelled: int | None = None  # training images with a label, where --labels labels only some


@dataclass(frozen=True)
class Runtime:
    """Where the run ran: torch's device and arithmetic, onnxruntime's device, the processes."""

    torch_device: str
    onnxruntime_device: str
    precision: str
    channels_last: bool
    processes: int
    workers: int  # DataLoader processes per training process


@dataclass(frozen=True)
class Stage:
    """One model the run delivers or compares against, measured alike."""

    name: str  # "original", "pruned", "pruned + INT8", "INT8"
    flops: int
    params: int
    size_bytes: int  # serialized (weights included)
    quality: dict[str, float]  # on the held-out data (``metrics.compare_outputs``)
    quality_drop: float  # points, by --max-drop's measure
    latency_ms: float | None  # median in onnxruntime, timed side by side with the others
    speedup: float | None


@dataclass(frozen=True)
class Recovery:
    """How a final fine-tuning that ran until it stopped improving went: each epoch's loss against
    the original on the held-out images that chose (``selection_images``: the judged share where the
    held-out set is split, else all of it), which epoch's weights were kept, and why it stopped."""

    epochs: int
    steps: int
    kept_epoch: int  # 0: the model as the rounds left it
    stopped: str
    selection_loss: tuple[float, ...]  # before training, then after each epoch
    selection_images: int
    budget_s: float
    seconds: float


@dataclass(frozen=True)
class Report:
    """Everything a pruning run did and measured."""

    model: str | None
    settings: dict[str, Any]
    criterion: str
    flops: Flops
    macs: Macs
    params: Params
    widths: Widths
    lossless: LosslessCounts
    quality: Quality
    batchnorm_inserted: int
    fixed_batch: int | None
    verification: Verification
    latency: dict[str, Any] | None  # bench.BenchResult.as_dict(), with the target's verdict when asked
    hardware_aware: HardwareAware | None
    trajectory: tuple[RoundRecord, ...]
    data: DataSizes
    external_data: bool
    time_s: float
    runtime: Runtime | None = None
    stage_times_s: dict[str, float] = field(default_factory=dict)  # wall seconds per pipeline stage
    resumed_after: str | None = None  # the checkpoint's stage when --resume continued a run
    budget: Budget | None = None  # with --max-drop as the goal
    recovery: Recovery | None = None  # the final fine-tuning, where it ran until it stopped improving
    blocks: dict[str, Any] | None = None  # residual blocks removed whole (--structure both|depth)
    stages: tuple[Stage, ...] = ()  # original, pruned (and pruned + INT8): quality, size, latency
    output: str | None = None  # set by whoever writes the model (the CLI)
    report_folder: str | None = None
    schema_version: int = SCHEMA_VERSION
    onnxprune_version: str = field(default=__version__)

    def written_to(self, output: str | None, report_folder: str) -> Report:
        return replace(self, output=output, report_folder=report_folder)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (``report.json``)."""
        d = asdict(self)
        d["quality"]["drop"] = self.quality.drop.as_dict()
        d["quality"]["intervals"] = {k: list(v) for k, v in self.quality.intervals.items()}
        d["quality"]["outputs"] = [dict(row) for row in self.quality.outputs]
        d["trajectory"] = list(d["trajectory"])
        d["stages"] = list(d["stages"])
        if d["recovery"] is not None:
            d["recovery"]["selection_loss"] = list(d["recovery"]["selection_loss"])
        return d


def human(n: float) -> str:
    """1234567 -> '1.23M': counts a person can read at a glance."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def render_markdown(r: dict[str, Any]) -> str:
    """One page: what was done, before → after, settings, time."""
    f, p, q = r["flops"], r["params"], r["quality"]
    s = r["settings"]
    budget = r.get("budget")
    goal = (f"the smallest by {budget['minimize']} within --max-drop {budget['max_points']:g}" if budget
            else f"target {s['target_flops']:.0%}")
    lines = [
        f"# onnxprune report: {r.get('model') or 'model'}",
        "",
        f"Pruned to **{f['fraction']:.1%} of the FLOPs** ({goal}) with the "
        f"`{r['criterion']}` criterion in {len(r['trajectory']) - 1} round(s), verified against the "
        f"fine-tuned torch model (max abs error {r['verification']['max_abs_error']:.2g}), in {r['time_s']:.0f} s.",
        "",
        "| | before | after | kept |",
        "| --- | ---: | ---: | ---: |",
        f"| FLOPs | {human(f['before'])} | {human(f['after'])} | {f['fraction']:.1%} |",
        f"| MACs | {human(r['macs']['before'])} | {human(r['macs']['after'])} | {r['macs']['after'] / max(r['macs']['before'], 1):.1%} |",
        f"| params | {human(p['before'])} | {human(p['after'])} | {p['fraction']:.1%} |",
    ]
    before, after = q["before"], q["after"]
    data, run = r["data"], r.get("runtime")
    if "accuracy" in after:
        lines.append(f"| accuracy ({q['validation_inputs']} held-out) | {before['accuracy']:.2%} | {after['accuracy']:.2%} | |")
    if "top1_agreement" in after:
        lines.append(f"| top-1 agreement with the original | 100% | {after['top1_agreement']:.2%} | |")
    drop = q.get("drop") or {}
    metric, spans = drop.get("metric"), q.get("intervals") or {}
    if metric and metric not in ("accuracy", "top1_agreement") and metric in after:
        def span(which: str) -> str:
            return f" ({spans[which][0]:.2%}–{spans[which][1]:.2%})" if which in spans else ""

        lines.append(f"| {metric.replace('_', ' ')} ({q.get('task', 'regress')}, {q['validation_inputs']} held-out) | "
                     f"{before[metric]:.2%}{span('before')} | {after[metric]:.2%}{span('after')} | |")
    lines.append(f"| output cosine similarity | 1 | {after['cosine']:.4f} | |")
    if "explained_variance" in after:
        lines.append(f"| explained variance of the original's outputs | 1 | {after['explained_variance']:.4f} | |")
    if drop:
        verdict = "within" if drop["within"] else "**beyond** (no model written)"
        interval = drop.get("interval")
        lines += ["", f"Quality budget: {drop['points']:.1f} points of {drop['metric'].replace('_', ' ')} lost"
                      + (f" (95 % interval of the points lost {interval[0]:+.1f} to {interval[1]:+.1f})" if interval else "")
                      + f", {verdict} --max-drop {drop['max']:g}."]
        if interval and not drop.get("resolved", True):
            lines.append(f"That interval is wider than --max-drop {drop['max']:g}: the {drop['items']} held-out images "
                         f"cannot resolve it; about {drop['items_to_resolve']} would.")
    lat = r.get("latency")
    if lat:
        base, pruned = lat["timings"][:2]
        lines.append(f"| latency, median ms | {base['median_ms']:.2f} | {pruned['median_ms']:.2f} | "
                     f"{pruned['speedup']:.2f}x faster{' (within noise)' if pruned['within_noise'] else ''} |")
        lines += ["", f"Latency: onnxruntime {lat['provider']} on {lat['device']}, {lat['threads']} thread(s), "
                      f"batch {lat['batch']}, {lat['runs']} interleaved runs after {lat['warmup']} warm-up."]
        if "target" in lat:
            lines.append(f"Latency target {lat['target']:.0%}: {'met' if lat['target_met'] else 'NOT met'} "
                         f"(measured {1 / pruned['speedup']:.1%} of the original).")
    if budget:
        lines += ["", f"Budget as the goal: stopped after round {budget['stopped_after']}, keeping "
                      f"{'round ' + str(budget['kept_round']) if budget['kept_round'] else 'the original'}: "
                      f"{budget['reason']}."]
    if r.get("stages"):
        lines += ["", "## Stages", "", "| model | FLOPs | params | size | quality lost, points | latency, median ms "
                  "| speed-up |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for st in r["stages"]:
            ms = "" if st["latency_ms"] is None else f"{st['latency_ms']:.2f}"
            up = "" if st["speedup"] is None else f"{st['speedup']:.2f}x"
            lines.append(f"| {st['name']} | {human(st['flops'])} | {human(st['params'])} | "
                         f"{st['size_bytes'] / 1e6:.2f} MB | {st['quality_drop']:.1f} | {ms} | {up} |")
    hw = r.get("hardware_aware")
    if hw:
        lines += ["", f"Hardware-aware widths: measured width step {hw['round_to']} on {hw['device']} "
                      f"({hw['threads']} thread(s)), latency tables for {hw['layers_measured']} layer(s); predicted "
                      f"latency {hw['predicted_fraction']:.1%} of the original's {hw['original_ms_measured']:.2f} ms."]
        if hw.get("step_candidates"):
            lines += ["", f"Width steps tried (each pruned once to the target and timed beside the original; "
                          f"step {hw['round_to']} won: {hw['step_reason']}):", "",
                      "| step | FLOPs kept | predicted ms | measured ms | efficiency |", "| --- | --- | --- | --- | --- |"]
            for c in hw["step_candidates"]:
                measured = "" if c["measured_ms"] is None else f"{c['measured_ms']:.2f}"
                lines.append(f"| {c['step']} | {c['flops_fraction']:.1%} | {c['predicted_ms']:.2f} | {measured} | "
                             f"{c['efficiency']:.2f} |")
        if hw.get("table"):
            lines.append(f"The tables come from `{hw['table']}`, measured on {hw['device']}; the latency above was "
                         "measured on this machine.")
    labelled = f" ({data['labelled']} labelled)" if data.get("labelled") is not None else ""
    lines += ["", f"Data: {data['train']} training{labelled}, {data['validation']} held-out and {data['calibration']} "
                  f"calibration {data['kind']}; fine-tuning views: {data['augment']}."]
    if run:
        lines.append(f"Ran on torch {run['torch_device']} ({run['precision']}"
                     f"{', channels-last' if run['channels_last'] else ''}) in {run['processes']} process(es) with "
                     f"{run['workers']} loader worker(s) each; onnxruntime on {run['onnxruntime_device']}.")
    if r.get("stage_times_s"):
        lines.append("Seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in r["stage_times_s"].items()) + ".")
    if r.get("resumed_after"):
        lines.append(f"Resumed after {r['resumed_after']} from the checkpoint of a stopped run.")
    free = r["lossless"]
    kept = (f" {free['constant_channels_kept']} constant channel(s) stay: a padded consumer cannot absorb them."
            if free["constant_channels_kept"] else "")
    lines += ["", f"Lossless pass: {free['dead_channels_removed']} dead channel(s) removed and "
                  f"{free['constant_channels_folded']} constant channel(s) folded into their consumers' biases, "
                  f"for free.{kept}", ""]
    blocks = r.get("blocks")
    if blocks is not None:
        lines += [f"Residual blocks: {len(blocks['removed'])} of {blocks['offered']} removed whole before the channel "
                  f"rounds ({blocks['flops_removed']:.1%} of the FLOPs), those whose removal moved the outputs least "
                  + ("per millisecond saved" if blocks.get("ranked_by") == "latency" else "per FLOP")
                  + (f": {', '.join(blocks['removed'])}." if blocks["removed"] else "."), ""]
    lines += ["## Rounds", "", "| round | FLOPs kept | params | latency kept, predicted | agreement "
              "| quality lost, points | fine-tune loss | |",
              "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for t in r["trajectory"]:
        frac = t["flops"] / f["before"]
        agree, loss, drop = t.get("agreement"), t.get("loss"), t.get("quality_drop")
        ms = t.get("latency_fraction_predicted")
        note = ("not kept: beyond the budget" if not t.get("kept", True) else "") + \
            (f" (after {t['extra_steps']} more steps)" if t.get("extra_steps") else "")
        lines.append(f"| {t['round']} | {frac:.1%} | {human(t['params'])} | {'' if ms is None else f'{ms:.1%}'} | "
                     f"{'' if agree is None else f'{agree:.2%}'} | {'' if drop is None else f'{drop:.1f}'} | "
                     f"{'' if loss is None else f'{loss:.4f}'} | {note.strip()} |")
    lines += ["", "## Settings", "", "| setting | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in sorted(s.items())]
    lines += ["", "Plots: `widths.png` (channels per group), `trajectory.png` (FLOPs and agreement per "
              "round), `latency.png`.", ""]
    return "\n".join(lines)


def render_plots(r: dict[str, Any]) -> dict[str, bytes]:
    """PNG plots as bytes, keyed by file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots: dict[str, bytes] = {}

    def save(fig, name: str) -> None:
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=110)
        plt.close(fig)
        plots[name] = buffer.getvalue()

    before, after = r["widths"]["before"], r["widths"]["after"]
    names = list(before)
    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(names) + 2), 4))
    x = range(len(names))
    ax.bar(x, [before[n] for n in names], color="#c8d3e0", label="before")
    ax.bar(x, [after.get(n, 0) for n in names], color="#2f6db5", width=0.6, label="after")
    ax.set_xticks(list(x))
    ax.set_xticklabels([_short(n.split(" + ")[0]) for n in names], rotation=90, fontsize=6)
    ax.set_ylabel("channels")
    ax.set_title("Channels per group (named by their first producer)")
    ax.legend()
    save(fig, "widths.png")

    traj = r["trajectory"]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    rounds = [t["round"] for t in traj]
    ax.plot(rounds, [t["flops"] / r["flops"]["before"] for t in traj], "o-", color="#2f6db5", label="FLOPs kept")
    if r["settings"].get("target_flops") is not None:
        ax.axhline(r["settings"]["target_flops"], color="#999", ls="--", lw=1, label="target")
    agreement = [(t["round"], t["agreement"]) for t in traj if t.get("agreement") is not None]
    if agreement:
        ax.plot(*zip(*agreement), "s-", color="#d0602a", label="top-1 agreement (held-out)")
    ax.set_xlabel("round")
    ax.set_ylim(0, 1.05)
    ax.set_title("Pruning trajectory")
    ax.legend(loc="lower left", fontsize=8)
    save(fig, "trajectory.png")

    lat = r.get("latency")
    if lat:
        fig, ax = plt.subplots(figsize=(4.5, 3.6))
        timings = lat["timings"]
        medians = [t["median_ms"] for t in timings]
        errors = [t["p90_ms"] - t["median_ms"] for t in timings]
        ax.bar([t["name"] for t in timings], medians, yerr=errors, capsize=6,
               color=["#c8d3e0", "#2f6db5", "#d0602a"][:len(timings)])
        ax.set_ylabel("median latency, ms (bar to p90)")
        ax.set_title(f"{lat['provider'].replace('ExecutionProvider', '')}, batch {lat['batch']}: "
                     + ", ".join(f"{t['speedup']:.2f}x" for t in timings[1:]))
        save(fig, "latency.png")
    return plots


def _short(name: str, width: int = 24) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]
