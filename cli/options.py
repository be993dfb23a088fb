"""The ``prune`` command's options: one per field of ``onnxprune.options.PruneOptions`` (help and
default from the field), plus the command's own ``--data``, ``-o`` and ``--json``, shown in groups.

Values are checked once, by ``onnxprune.options.validate``, and a bad one is a usage error (exit 2)
naming the flag. docs/options.md is generated from the command itself, so it lists what --help does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click
import cloup

from onnxprune.options import InvalidOption, PruneOptions, cli_fields, resolve

__all__ = ["prune_options", "options_from", "join_lists", "options_markdown", "GROUPS"]

LIST_OPTIONS = ("--mean", "--std")  # take "0.5,0.5,0.5", "0.5 0.5 0.5" or one value

# The prune command's help in the order a user reads it: the job and the five options most runs
# need first (the README's table), then one group per concern. Names are click's parameter names.
GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("The job (most runs need only these)",
     ("data", "target_flops", "target_latency", "max_drop", "labels", "quantize")),
    ("Data and labels",
     ("val_split", "val_data", "unlabeled", "val_images", "judge_views", "calibration_images", "input_size", "mean", "std", "bgr")),
    ("Quality", ("task", "box_layout", "mask_threshold", "blank", "metric", "minimize")),
    ("Hardware and latency", ("round_to", "latency_table", "bench", "device", "precision", "workers")),
    ("Training", ("structure", "criterion", "flops_weight", "min_channels", "rounds", "round_steps", "epochs", "time_budget", "lr",
                  "batch_size", "augment", "recover", "dsd_sparsity", "schedule", "reconstruct", "feature_hints", "lossless",
                  "seed")),
    ("Output", ("output", "as_json", "resume")),
)

# The command's own options (not settings of a run, so not fields of PruneOptions).
COMMAND_OPTIONS: dict[str, Callable] = {
    "data": click.option("--data", required=True, metavar="DIR|FILE.npy",
                         help="Images to score, fine-tune and judge on: a folder (recursive) or an .npy/.npz "
                              "of model inputs."),
    "output": click.option("-o", "--output", type=click.Path(path_type=str), metavar="FILE.onnx",
                           help="Where to write the pruned model; its report goes beside it in <stem>.report/  "
                                "[default: <model>.pruned.onnx]"),
    "as_json": click.option("--json", "as_json", is_flag=True,
                            help="Print the summary as one JSON object on stdout."),
}


def _flag(f) -> str:
    return f.metadata["cli"] or "--" + f.name.replace("_", "-")


def _shown_default(f) -> str | None:
    meta, kind = f.metadata, str(f.type)
    return meta["default_text"] or (None if f.default is None or kind == "bool" else f"{f.default:g}"
                                    if isinstance(f.default, float) else str(f.default))


def _click_option(f) -> Callable:
    meta, kind = f.metadata, str(f.type)
    shown = _shown_default(f)
    help = meta["help"] + (f"  [default: {shown}]" if shown is not None else "")
    common: dict[str, Any] = {"help": help, "metavar": meta["metavar"]}
    if kind == "bool":  # a switch; a "--no-…" flag turns a default-on setting off
        return click.option(_flag(f), f.name, is_flag=True, **common)
    if kind.startswith("tuple[int, int]"):
        return click.option(_flag(f), f.name, nargs=2, type=int, **common)
    if kind in ("float", "float | None"):
        return click.option(_flag(f), f.name, type=float, **common)
    if kind in ("int", "int | None"):
        return click.option(_flag(f), f.name, type=int, **common)
    return click.option(_flag(f), f.name, type=str, **common)  # strings, lists and "int | str"


def prune_options(command: Callable) -> Callable:
    """Decorate ``command`` with the command's options and one per CLI field of ``PruneOptions``,
    in the help's groups (``GROUPS``)."""
    options = {**COMMAND_OPTIONS, **{f.name: _click_option(f) for f in cli_fields()}}
    grouped = [name for _, names in GROUPS for name in names]
    if sorted(grouped) != sorted(options):
        raise RuntimeError(f"the prune help's groups and its options differ: {set(grouped) ^ set(options)}")
    for title, names in reversed(GROUPS):
        command = cloup.option_group(title, *(options[name] for name in names))(command)
    return command


def _value(f, raw: Any) -> Any:
    """The field's value from what click parsed (None when the flag was not given)."""
    kind = str(f.type)
    if kind == "bool":
        return (not raw) if f.metadata["cli"] else bool(raw)
    if raw is None or raw == ():
        return f.default
    if kind.startswith("tuple[float"):
        try:
            return tuple(float(v) for v in str(raw).split(",") if v.strip())
        except ValueError:
            raise click.BadParameter("takes numbers, e.g. 0.485,0.456,0.406 or 0.485 0.456 0.406",
                                     param_hint=_flag(f)) from None
    if kind.startswith("tuple[int"):
        return tuple(raw)
    if kind == "int | str":
        return int(raw) if raw.lstrip("-").isdigit() else raw
    return raw


def options_from(params: dict[str, Any]) -> PruneOptions:
    """``PruneOptions`` from click's parsed values, checked; a bad value names its flag (exit 2)."""
    values = {f.name: _value(f, params[f.name]) for f in cli_fields()}
    target_flops = values.pop("target_flops")
    try:
        return resolve(target_flops, values)
    except InvalidOption as err:
        field = next(f for f in cli_fields() if f.name == err.option)
        raise click.BadParameter(err.problem, param_hint=_flag(field)) from None


def join_lists(args: list[str]) -> list[str]:
    """``--mean 0.5 0.5 0.5`` → ``--mean 0.5,0.5,0.5``, so both spellings parse."""
    out: list[str] = []
    i = 0
    while i < len(args):
        out.append(args[i])
        if args[i] in LIST_OPTIONS:
            values = []
            while i + 1 < len(args) and _is_number_list(args[i + 1]):
                values.append(args[i + 1])
                i += 1
            if values:
                out.append(",".join(values))
        i += 1
    return out


def _is_number_list(token: str) -> bool:
    try:
        [float(v) for v in token.split(",") if v.strip()]
    except ValueError:
        return False
    return bool(token.strip(", "))


def options_markdown() -> str:
    """docs/options.md: every option of ``onnxprune prune`` as --help shows it, in its groups, with the
    ``prune()`` keyword of each run setting."""
    from .main import prune

    fields_by_param = {f.name: f for f in cli_fields()}
    params = {p.name: p for p in prune.params if isinstance(p, click.Option)}
    rows = ["# Options", "",
            "Generated from the `prune` command (its options are the fields of `onnxprune.options.PruneOptions`",
            "and the command's own `--data`, `-o` and `--json`) by `python -m onnxprune_cli.options > docs/options.md`;",
            "a test keeps this page and `onnxprune prune --help` in step. In Python,",
            "`prune(model, data, target_flops, **options)` takes the field names in the second column as keywords",
            "(or `options=PruneOptions(...)`)."]
    for title, names in GROUPS:
        rows += ["", f"## {title}", "", "| flag | field | default | what it does |", "| --- | --- | --- | --- |"]
        for name in names:
            param, f = params[name], fields_by_param.get(name)
            flags = ", ".join(f"`{flag}`" for flag in param.opts) + (f" `{param.metavar}`" if param.metavar else "")
            text, _, shown = (param.help or "").removesuffix("]").partition("  [default: ")
            if f:
                text, shown = f.metadata["help"], _shown_default(f) or ""
            shown = "(required)" if param.required else shown
            rows.append(f"| {_cell(flags)} | {f'`{f.name}`' if f else '(CLI only)'} | {_cell(shown)} | {_cell(text)} |")
    python_only = [f for f in fields(PruneOptions) if f.metadata.get("cli") is None]
    if python_only:
        rows += ["", "## Python only (no flag)", "", "| field | default | what it does |", "| --- | --- | --- |"]
        rows += [f"| `{f.name}` | {_cell(_shown_default(f) or '')} | {_cell(f.metadata['help'])} |"
                 for f in python_only]
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":
    print(options_markdown(), end="")
