"""Human-readable text for the CLI's other results: analyze and bench (a pruning run's report is
rendered by ``onnxprune.render``, one home for report.md, the plots and the summary)."""

from __future__ import annotations

from typing import Any

from onnxprune.render import human

__all__ = ["render_analysis", "render_groups", "render_bench"]


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
