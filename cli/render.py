"""Human-readable text for the CLI's results."""

from __future__ import annotations

from typing import Any

from onnxprune.report import human

__all__ = ["render_analysis", "render_groups", "render_summary", "render_bench"]


def _shape(dims: list) -> str:
    return "×".join(str(d) for d in dims)


def render_analysis(a: dict[str, Any]) -> str:
    lines = [
        f"model     {a['model'] or '(in memory)'}",
        f"producer  {a['producer'] or 'unknown'}   IR {a['ir_version']}   opset "
        + ", ".join(f"{d} {v}" for d, v in a["opset"].items()),
    ]
    for vi in a["inputs"]:
        lines.append(f"input     {vi['name']}  {vi['dtype']}  {_shape(vi['shape'])}")
    for vi in a["outputs"]:
        lines.append(f"output    {vi['name']}  {vi['dtype']}  {_shape(vi['shape'])}")
    at = a["counted_at"]
    lines += [
        "",
        f"counted at batch 1, {at['height']}×{at['width']}:  {human(a['flops'])} FLOPs   "
        f"{human(a['macs'])} MACs   {human(a['params'])} params   {a['nodes']} nodes",
        *([f"size      {a['size_chosen']}"] if a.get("size_chosen") else []),
        "",
        f"{'op type':<24}{'count':>6}{'FLOPs':>10}{'share':>8}{'params':>10}",
    ]
    total = a["flops"] or 1
    for op, row in a["by_op_type"].items():
        lines.append(
            f"{op:<24}{row['count']:>6}{human(row['flops']):>10}{row['flops'] / total:>8.1%}"
            f"{human(row['params']):>10}"
        )
    lines += ["", "costliest nodes:"]
    for n in a["top_nodes"]:
        lines.append(f"  {n['flops_share']:>6.1%}  {human(n['flops']):>8}  {n['op_type']:<14} {n['name']}")
    groups = a.get("groups")
    if groups is not None:
        lines.append("")
        lines.extend(render_groups(a))
    blocks = a.get("blocks")
    if blocks is not None:
        lines.append("")
        lines.extend(render_blocks(blocks, a["macs"]))
    return "\n".join(lines)


def render_blocks(blocks: list[dict[str, Any]], macs: int) -> list[str]:
    """The residual blocks whose branch can go whole, the skip carrying on."""
    if not blocks:
        return ["residual blocks  none removable (no branch joined by Add to a skip of its own input)"]
    projected = sum(b["skip"] == "projection" for b in blocks)
    share = sum(b["macs"] for b in blocks) / (macs or 1)
    lines = [f"residual blocks  {len(blocks)} removable ({len(blocks) - projected} identity skips, {projected} with a "
             f"projection that stays), their branches {share:.1%} of the MACs:"]
    for b in blocks:
        lines.append(f"  {b['macs'] / (macs or 1):>6.1%}  {b['nodes']:>3} nodes  {b['skip']:<10} {b['add']}")
    return lines


def render_groups(a: dict[str, Any]) -> list[str]:
    """Channel groups: how much is prunable, the largest groups, and why the rest is blocked."""
    g = a["groups"]
    lines = [
        f"channel groups: {g['count']} ({g['prunable']} prunable, {g['blocked']} blocked)   "
        f"prunable channels: {g['prunable_channels']}   prunable FLOPs: {a['prunable_flops_share']:.1%}",
        "",
        f"{'group':>6}{'channels':>10}{'FLOPs/ch':>10}{'params/ch':>11}  members",
    ]
    shown = [grp for grp in g["groups"] if not grp["blocked"]][:15]
    for grp in shown:
        members = ", ".join(grp["producers"][:3]) + (" …" if len(grp["producers"]) > 3 else "")
        lines.append(
            f"{grp['id']:>6}{grp['channels']:>10}{human(grp['flops_per_channel']):>10}"
            f"{human(grp['params_per_channel']):>11}  {members}"
        )
    rest = g["prunable"] - len(shown)
    if rest > 0:
        lines.append(f"{'':>6}… {rest} more (--json lists all)")
    blocked = [grp for grp in g["groups"] if grp["blocked"]]
    if blocked:
        lines += ["", "blocked:"]
        for grp in blocked[:15]:
            lines.append(f"  group {grp['id']} ({grp['channels']} ch): {grp['blocked']}")
        if len(blocked) > 15:
            lines.append(f"  … {len(blocked) - 15} more (--json lists all)")
    return lines


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


def render_bench(b: dict[str, Any]) -> str:
    """Latency table: median, p90, spread and speed-up against the first model."""
    lines = [
        f"{b['provider']} on {b['device']}, {b['threads']} thread(s), batch {b['batch']}, "
        f"{b['runs']} interleaved runs after {b['warmup']} warm-up",
        "",
        f"{'model':<40}{'median ms':>11}{'p90 ms':>9}{'spread':>8}{'speed-up':>10}",
    ]
    for i, t in enumerate(b["timings"]):
        note = "" if i == 0 else ("  (within noise)" if t["within_noise"] else "")
        name = t["name"] if len(t["name"]) <= 38 else "…" + t["name"][-37:]
        lines.append(f"{name:<40}{t['median_ms']:>11.2f}{t['p90_ms']:>9.2f}{t['spread']:>8.0%}"
                     f"{t['speedup']:>9.2f}x{note}")
    return "\n".join(lines)


def _judged_on(quality: dict) -> str:
    """What the figures rest on: the held-out inputs, or the images and the views of each."""
    drop = quality["drop"]
    if drop.get("views", 1) > 1:
        return f"{drop['items']} held-out images, each seen {drop['views']} ways (itself and shifts)"
    return f"{quality['validation_inputs']} held-out inputs"
