"""The ``prune`` command's options, generated from ``onnxprune.options.PruneOptions``.

Each field becomes one click option with the field's help and default; values are checked once,
by ``onnxprune.options.validate``, and a bad one is a usage error (exit 2) naming the flag.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

import click

from onnxprune.options import InvalidOption, PruneOptions, cli_fields, resolve

__all__ = ["prune_options", "options_from", "join_lists", "options_markdown"]

LIST_OPTIONS = ("--mean", "--std")  # take "0.5,0.5,0.5", "0.5 0.5 0.5" or one value


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
    """Decorate ``command`` with one option per CLI field of ``PruneOptions``."""
    for f in reversed(cli_fields()):
        command = _click_option(f)(command)
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
    """docs/options.md: every option of ``onnxprune prune`` (and of ``prune()``), from ``PruneOptions``."""
    rows = ["# Options", "",
            "Generated from `onnxprune.options.PruneOptions` by `python -m onnxprune_cli.options > docs/options.md`;",
            "a test keeps this page and the code in step. In Python, `prune(model, data, target_flops, **options)`",
            "takes the field names in the second column as keywords (or `options=PruneOptions(...)`).", "",
            "| flag | field | default | what it does |", "| --- | --- | --- | --- |"]
    for f in cli_fields():
        shown = _shown_default(f)
        rows.append(f"| `{_flag(f)}` | `{f.name}` | {_cell(shown or '')} | {_cell(f.metadata['help'])} |")
    python_only = [f for f in fields(PruneOptions) if f.metadata.get("cli") is None]
    if python_only:
        rows += ["", "Python only (no flag):", "", "| field | default | what it does |", "| --- | --- | --- |"]
        rows += [f"| `{f.name}` | {_cell(_shown_default(f) or '')} | {_cell(f.metadata['help'])} |"
                 for f in python_only]
    return "\n".join(rows) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


if __name__ == "__main__":
    print(options_markdown(), end="")
