"""The ``onnxprune`` command: a thin click layer over the library.

Every OnnxpruneError becomes one line on stderr and exit code 1; click's usage errors exit 2.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import click

from onnxprune import __version__
from onnxprune.errors import OnnxpruneError

from .render import render_analysis

__all__ = ["main", "cli"]

log = logging.getLogger("onnxprune")


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.WARNING
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("onnxprune: %(message)s"))
    root = logging.getLogger("onnxprune")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _Context:
    verbose = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="onnxprune")
@click.option("-v", "--verbose", is_flag=True, help="Show debug messages and tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Show only errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """onnxprune: ONNX in, smaller and faster ONNX out.

    \b
    onnxprune analyze MODEL.onnx         what a model costs and what can be pruned
    """
    _setup_logging(verbose, quiet)
    ctx.obj = _Context()
    ctx.obj.verbose = verbose


def _input_size(value: tuple[int, int] | None) -> tuple[int, int] | None:
    return tuple(value) if value else None  # type: ignore[return-value]


@cli.command()
@click.argument("model", type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option(
    "--input-size", nargs=2, type=click.IntRange(min=1), default=None, metavar="H W",
    help="Input height and width for models with symbolic spatial dims.",
)
def analyze(model: str, as_json: bool, input_size: tuple[int, int] | None) -> None:
    """Show a model's inputs, FLOPs, MACs and params, per op type and for the costliest nodes."""
    from onnxprune.analyze import analyze as run_analysis

    result: dict[str, Any] = run_analysis(model, _input_size(input_size))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(render_analysis(result))


def main() -> None:
    """Console entry point: one line on stderr for user errors, tracebacks only with -v."""
    try:
        cli.main(standalone_mode=False)
    except OnnxpruneError as err:
        if "-v" in sys.argv or "--verbose" in sys.argv:
            log.exception("failed")
        click.echo(f"onnxprune: error: {err}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("onnxprune: aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("onnxprune: interrupted; no output was written", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
