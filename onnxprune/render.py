"""A pruning run's report as people read it, from ``report.json``'s dict (``Report.as_dict``):
the one page of report.md (``render_markdown``), the PNG plots (``render_plots``) and the few
lines the CLI prints (``render_summary``). One home, so the three say the same thing."""

from __future__ import annotations

import io
from typing import Any

__all__ = ["human", "render_markdown", "render_plots", "render_summary"]


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


def render_summary(r: dict[str, Any]) -> str:
    """What a pruning run did, in a few lines."""
    f, p, q = r["flops"], r["params"], r["quality"]
    budget = r.get("budget")
    goal = (f"the smallest by {budget['minimize']} within --max-drop {budget['max_points']:g}" if budget
            else f"target {r['settings']['target_flops']:.0%}")
    lines = [
        f"wrote {r['output']}  (report: {r['report_folder']}/report.json)",
        f"FLOPs   {human(f['before'])} → {human(f['after'])}  ({f['fraction']:.1%} kept, {goal})",
        f"params  {human(p['before'])} → {human(p['after'])}  ({p['fraction']:.1%} kept)",
    ]
    before, after = q["before"], q["after"]
    spans = q.get("intervals") or {}

    def span(which: str) -> str:
        low_high = spans.get(which)
        return f" (95 % interval {low_high[0]:.2%}–{low_high[1]:.2%})" if low_high else ""

    drop = q["drop"]
    metric = drop["metric"]
    lines.append(f"task  {q.get('task', 'regress')}: {metric.replace('_', ' ')} {before[metric]:.2%}{span('before')} → "
                 f"{after[metric]:.2%}{span('after')} on {_judged_on(q)}")
    if "top1_agreement" in after and metric != "top1_agreement" and q.get("task") == "classify":
        lines.append(f"top-1 agreement with the original  {after['top1_agreement']:.2%}")
    for extra, label in (("map50_95", "mAP@0.5:0.95"), ("character_error_rate", "character error rate"),
                         ("cosine", "output cosine similarity")):
        if extra in after:
            lines.append(f"{label}  {after[extra]:.4f}")
    if metric != "explained_variance":
        lines.append(f"explained variance of the original's outputs  {after['explained_variance']:.4f}")
    if drop.get("undefined"):
        lines.append(f"undefined  {drop['undefined']}; judged by {metric.replace('_', ' ')} instead")
    outputs = q.get("outputs") or []
    if len(outputs) > 1:
        lines.append("outputs  " + "; ".join(f"{o['name']} {o['role']}: {o['metric'].replace('_', ' ')} {o['after']:.4f}"
                                             for o in outputs))
    verb = "lost" if drop["points"] >= 0 else "gained"
    interval = drop.get("interval")
    within = f"; points lost, 95 % interval {interval[0]:+.1f} to {interval[1]:+.1f}" if interval else ""
    lines.append(f"quality {verb}  {abs(drop['points']):.1f} points of {metric.replace('_', ' ')} "
                 f"(--max-drop {drop['max']:g}{within})")
    if interval and not drop.get("resolved", True):
        lines.append(f"unresolved  the interval is wider than --max-drop {drop['max']:g}: {drop['items']} held-out images "
                     f"cannot resolve it; about {drop['items_to_resolve']} would (more images or --val-data)")
    blocks = r.get("blocks")
    if blocks is not None:
        lines.append(f"blocks  removed {len(blocks['removed'])} of {blocks['offered']} residual blocks whole "
                     f"({blocks['flops_removed']:.1%} of the FLOPs) before the channels")
    if budget:
        kept = f"round {budget['kept_round']}" if budget["kept_round"] else "the original"
        lines.append(f"stopped  after round {budget['stopped_after']}, kept {kept}: {budget['reason']}")
    if r.get("fixed_batch"):
        lines.append(f"batch  fixed at {r['fixed_batch']} in the input file: freed while pruning, kept in the output")
    if r.get("batchnorm_inserted"):
        lines.append(f"BatchNorm  {r['batchnorm_inserted']} layer(s) added for fine-tuning (it was folded), "
                     "folded back into the convs")
    lat = r.get("latency")
    if lat:
        base, *others = lat["timings"]
        for other in others:
            noise = " (within noise)" if other["within_noise"] else ""
            lines.append(f"latency  {base['median_ms']:.2f} → {other['median_ms']:.2f} ms {other['name']}  "
                         f"({other['speedup']:.2f}x{noise}; {lat['provider'].replace('ExecutionProvider', '')}, "
                         f"{lat['threads']} threads, batch {lat['batch']})")
        if "target" in lat:
            lines.append(f"latency target  {lat['target']:.0%}: {'met' if lat['target_met'] else 'NOT met'}")
    for st in r.get("stages", ())[1:]:
        if "INT8" in st["name"]:
            verb = "lost" if st["quality_drop"] >= 0 else "gained"
            lines.append(f"{st['name']}  {st['size_bytes'] / 1e6:.2f} MB (original "
                         f"{r['stages'][0]['size_bytes'] / 1e6:.2f} MB), {abs(st['quality_drop']):.1f} points {verb}")
    hw = r.get("hardware_aware")
    if hw:
        tried = ", ".join(f"{c['step']}: {c['efficiency']:.2f}" for c in hw.get("step_candidates", ()))
        lines.append(f"widths  multiples of {hw['round_to']} (measured on {hw['device']}"
                     + (f"; efficiency by step {tried}" if tried else "")
                     + f"), predicted latency {hw['predicted_fraction']:.1%}")
    free = r["lossless"]
    if free["dead_channels_removed"] or free["constant_channels_folded"]:
        lines.append(f"removed for free  {free['dead_channels_removed']} dead and "
                     f"{free['constant_channels_folded']} constant channel(s)")
    data, run = r["data"], r.get("runtime")
    labelled = f" ({data['labelled']} labelled)" if data.get("labelled") is not None else ""
    lines.append(f"data  {data['train']} training{labelled}, {data['validation']} held-out, {data['calibration']} "
                 f"calibration {data['kind']}; views {data['augment']}")
    if data.get("note"):
        lines.append(f"note  {data['note']}")
    if run:
        lines.append(f"ran on  torch {run['torch_device']} ({run['precision']}"
                     f"{', channels-last' if run['channels_last'] else ''}), {run['processes']} process(es), "
                     f"{run['workers']} loader worker(s); onnxruntime {run['onnxruntime_device']}")
    recovery = r.get("recovery")
    if recovery:
        loss = recovery["selection_loss"]
        lines.append(f"recovery  {recovery['epochs']} epochs of final fine-tuning, stopped: {recovery['stopped']}; "
                     f"kept epoch {recovery['kept_epoch']} (loss against the original on "
                     f"{recovery['selection_images']} held-out images {loss[0]:.4g} → {loss[recovery['kept_epoch']]:.4g})")
    stages = ", ".join(f"{name} {seconds:.0f}" for name, seconds in r.get("stage_times_s", {}).items()
                       if seconds >= 0.5)
    lines.append(f"time  {r['time_s']:.1f} s" + (f"  ({stages})" if stages else ""))
    if r.get("resumed_after"):
        lines.append(f"resumed  after {r['resumed_after']} (from the checkpoint)")
    return "\n".join(lines)


def _judged_on(quality: dict) -> str:
    """What the figures rest on: the held-out inputs, or the images and the views of each."""
    drop = quality["drop"]
    if drop.get("views", 1) > 1:
        return f"{drop['items']} held-out images, each seen {drop['views']} ways (itself and shifts)"
    return f"{quality['validation_inputs']} held-out inputs"
