"""The ``onnxprune`` command: a thin click layer over the library.

Every OnnxpruneError becomes one line on stderr and exit code 1; click's usage errors exit 2.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import click
import cloup

from onnxprune import __version__
from onnxprune.errors import OnnxpruneError, first_line

from onnxprune.options import PruneOptions

from .options import join_lists, options_from, prune_options

__all__ = ["main", "cli"]

log = logging.getLogger("onnxprune")


def _setup_logging(verbose: bool, quiet: bool) -> None:
    from onnxprune.torchview.distributed import ranks

    level = logging.DEBUG if verbose else logging.ERROR if quiet else logging.INFO
    if not ranks().main:  # under torchrun rank 0 speaks for all
        level = max(level, logging.ERROR)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("onnxprune: %(message)s"))
    root = logging.getLogger("onnxprune")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    if not verbose:  # onnx2torch's converters trip torch deprecation warnings a user cannot act on
        warnings.filterwarnings("ignore", module=r"onnx2torch(\.|$)")


class _Context:
    verbose = False
    quiet = False


class _Interrupt:
    """Ctrl-C during a prune: noted at once, acted on at the next progress step or before writing.

    Raising KeyboardInterrupt straight from the signal can land in a finalizer (``__del__``)
    whose exceptions Python prints and swallows, and the run would go on to write its output.
    A second Ctrl-C stops at once.
    """

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> _Interrupt:
        self.previous = signal.signal(signal.SIGINT, self._on_signal)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self.previous)

    def _on_signal(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt


class _ProgressBars:
    """``prune(progress=…)`` shown as one click progress bar per stage on a terminal (with
    images/s for fine-tuning and an ETA), or as a line every ``every`` seconds when stderr is
    not one (a pipeline's log)."""

    def __init__(self, enabled: bool, interrupt: _Interrupt | None = None, every: float = 30.0):
        self.enabled = enabled
        self.interrupt = interrupt
        self.every = every
        self.tty = sys.stderr.isatty()
        self.bar = None
        self.stage: str | None = None
        self.done = 0
        self.started = self.logged = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.interrupt:
            self.interrupt.check()
        if not self.enabled:
            return
        now = time.monotonic()
        if stage != self.stage:
            self.close()
            self.stage, self.done, self.started, self.logged = stage, 0, now, now
            if self.tty:
                self.bar = click.progressbar(length=max(total, 1), label=f"onnxprune: {stage}", file=sys.stderr,
                                             show_eta=True, width=24, item_show_func=lambda rate: rate)
                self.bar.__enter__()
        rate = _rate(stage, done, now - self.started)
        if self.bar is not None:
            self.bar.update(done - self.done, rate)
        elif now - self.logged >= self.every or (done >= total and now - self.started >= 1.0):
            self.logged = now
            eta = (total - done) * (now - self.started) / done if done else None
            click.echo(f"onnxprune: {stage}: {done}/{total}{f', {rate}' if rate else ''}"
                       f"{f', ETA {_duration(eta)}' if eta and done < total else ''}", err=True)
        self.done = done
        if done >= total:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        self.bar, self.stage = None, None


def _rate(stage: str, done: int, seconds: float) -> str | None:
    """Images per second on the stages that count images (fine-tuning)."""
    if not stage.endswith("fine-tuning") or seconds <= 0 or not done:
        return None
    return f"{done / seconds:.1f} images/s"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


_GLOBAL_FLAGS = ("-v", "--verbose", "-q", "--quiet")


class _DefaultToPrune(cloup.Group):
    """``onnxprune MODEL …`` means ``onnxprune prune MODEL …``: pruning is the main job. Global
    flags may come after the command too, and ``--mean``/``--std`` take spaced numbers."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        end = args.index("--") if "--" in args else len(args)
        flags = [a for a in args[:end] if a in _GLOBAL_FLAGS]
        rest = [a for a in args[:end] if a not in _GLOBAL_FLAGS] + args[end:]
        if rest and rest[0] not in self.commands and not rest[0].startswith("-"):
            rest = ["prune", *rest]
        return super().parse_args(ctx, [*flags, *join_lists(rest)])


USAGE = """\
usage: onnxprune MODEL.onnx --data DIR [--target-flops 0.3] [--max-drop 3] [--labels imagefolder|FILE.csv]
       onnxprune analyze MODEL.onnx | bench A.onnx B.onnx | profile-device MODEL.onnx --out FILE
`onnxprune --help` describes the commands; `onnxprune prune --help` lists every option, in groups."""


@click.group(cls=_DefaultToPrune, invoke_without_command=True,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, "--version", prog_name="onnxprune")
@click.option("-v", "--verbose", is_flag=True, help="Show debug messages and tracebacks.")
@click.option("-q", "--quiet", is_flag=True, help="Show only errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """onnxprune: ONNX in, smaller and faster ONNX out.

    \b
    onnxprune MODEL.onnx --data DIR --target-flops 0.3   prune (same as `onnxprune prune …`)
    onnxprune analyze MODEL.onnx                          what a model costs and what can be pruned
    onnxprune bench A.onnx B.onnx                         latency side by side in onnxruntime
    onnxprune profile-device MODEL.onnx --out dev.json    latency tables for pruning elsewhere
    """
    if ctx.invoked_subcommand is None:  # a bare `onnxprune` asks how to use it: not an error
        click.echo(USAGE)
        ctx.exit(0)
    _setup_logging(verbose, quiet)
    ctx.obj = _Context()
    ctx.obj.verbose = verbose
    ctx.obj.quiet = quiet


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
    from onnxprune.graph.analysis import analyze as run_analysis

    from .render import render_analysis

    result: dict[str, Any] = run_analysis(model, _input_size(input_size))
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(render_analysis(result))


@cli.command()
@click.argument("model", type=click.Path(path_type=str), metavar="MODEL.onnx")
@prune_options
@click.pass_context
def prune(ctx: click.Context, model: str, data: str, output: str | None, as_json: bool, **params: Any) -> None:
    """Prune MODEL to at most --target-flops of its FLOPs, verify it, and write it with a report."""
    from onnxprune.graph.files import check_output_path, default_output
    from onnxprune.options import check_paths

    # the paths first, before onnx and torch are imported: a wrong one answers at once
    check_paths(model, data, params["labels"], params["val_data"], params["unlabeled"])
    out = Path(output) if output else default_output(Path(model))
    check_output_path(out, Path(model))
    options = options_from(params)
    with _Interrupt() as interrupt:
        _prune_and_write(model, data, options, out, as_json, ctx.obj.quiet, interrupt)


def _prune_and_write(model: str, data: str, options: PruneOptions, out: Path, as_json: bool, quiet: bool,
                     interrupt: _Interrupt) -> None:
    from dataclasses import asdict

    from onnxprune.errors import QualityBudgetExceeded
    from onnxprune.pipeline import prune as run_prune
    from onnxprune.render import render_markdown, render_plots, render_summary
    from onnxprune.graph.files import report_folder
    from onnxprune.graph.write import write_model, write_report


    from onnxprune.torchview.distributed import leave, ranks

    main_rank = ranks().main  # under torchrun only rank 0 shows progress and writes
    bars = _ProgressBars(enabled=not quiet and main_rank, interrupt=interrupt)
    settings = {k: v for k, v in asdict(options).items() if k != "target_flops"}
    settings["checkpoint_dir"] = settings.get("checkpoint_dir") or str(report_folder(out) / "checkpoint")
    try:
        result = run_prune(model, data, options.target_flops, progress=bars, **settings)
    except QualityBudgetExceeded as err:  # no model, but the report says why
        interrupt.check()
        if not main_rank:
            raise
        report = err.report.written_to(None, str(report_folder(out))).as_dict()
        write_report(report, report_folder(out), {"report.md": render_markdown(report).encode(),
                                                  **render_plots(report)})
        raise
    finally:
        bars.close()
    interrupt.check()
    leave()
    if not main_rank:
        return
    report = result.report.written_to(str(out), str(report_folder(out))).as_dict()
    extra = {"report.md": render_markdown(report).encode(), **render_plots(report)}
    interrupt.check()
    write_model(result.model, out, external_data=report.get("external_data", False))
    write_report(report, report_folder(out), extra)
    if as_json:
        click.echo(json.dumps(summary(report), indent=2))
    else:
        click.echo(render_summary(report))


@cli.command()
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--threads", type=int, help="onnxruntime intra-op threads [default: all cores].")
@click.option("--batch", type=int, default=1, show_default=True)
@click.option("--warmup", type=int, default=5, show_default=True)
@click.option("--runs", type=int, default=50, show_default=True, help="Timed runs per model, interleaved.")
@click.option("--data", help="Time on these inputs (image folder or .npy) instead of random ones.")
@click.option("--input-size", nargs=2, type=click.IntRange(min=1), metavar="H W")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
def bench(models: tuple[str, ...], device: str, threads: int | None, batch: int, warmup: int, runs: int,
          data: str | None, input_size, as_json: bool) -> None:
    """Time MODELS in onnxruntime, interleaved, with speed-ups against the first."""
    from onnxprune.measure.bench import benchmark_files
    from onnxprune.data.sources import load_data
    from onnxprune.graph.load import load

    from .render import render_bench

    inputs = None
    if data:
        listed = load_data(data, load(models[0], _input_size(input_size)).image)
        inputs = listed.subset(range(min(len(listed), batch))).inputs  # one batch is timed: decode no more
    result = benchmark_files(list(models), _input_size(input_size), device=device, threads=threads,
                             batch=batch, warmup=warmup, runs=runs, inputs=inputs)
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
    else:
        click.echo(render_bench(result.as_dict()))


@cli.command("profile-device")
@click.argument("models", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(path_type=str), help="The table file to write (JSON).")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help="Where the model will run.")
@click.option("--threads", type=click.IntRange(min=1), help="onnxruntime intra-op threads it will run with "
              "[default: all cores].")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="The batch it will run at.")
@click.option("--input-size", nargs=2, type=click.IntRange(min=1), metavar="H W",
              help="Input height and width for models with symbolic spatial dims.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.pass_context
def profile_device(ctx: click.Context, models: tuple[str, ...], out: str, device: str, threads: int | None,
                   batch: int, input_size, as_json: bool) -> None:
    """Measure, on the machine that will run MODELS, the width step and the latency tables of their
    prunable layers; prune elsewhere with `--latency-table OUT`."""
    from onnxprune.measure.device_table import profile_device as run_profile
    from onnxprune.graph.devices import onnxruntime_device
    from onnxprune.graph.files import check_output_path

    check_output_path(Path(out), None, flag="--out")
    bars = _ProgressBars(enabled=not ctx.obj.quiet)
    try:
        result = run_profile(list(models), out, onnxruntime_device(device), threads, batch, _input_size(input_size),
                             progress=bars)
    finally:
        bars.close()
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"wrote {result['out']}: width step {result['width_step']}, {result['layers']} layer table(s) of "
                   f"{result['models']} model(s), measured on {result['device']} ({result['threads']} thread(s), "
                   f"batch {result['batch']})")


def summary(report: dict[str, Any]) -> dict[str, Any]:
    """The part of the report a pipeline needs at once; report.json has the rest."""
    keys = ("output", "report_folder", "flops", "params", "quality", "latency", "criterion", "data", "runtime",
            "stage_times_s", "time_s", "budget", "stages")
    return {k: report[k] for k in keys}


def main() -> None:
    """Console entry point: one line on stderr for user errors, tracebacks only with -v."""
    try:
        cli.main(standalone_mode=False)
    except OnnxpruneError as err:
        if "-v" in sys.argv or "--verbose" in sys.argv:
            log.exception("failed")
        click.echo(f"onnxprune: error: {err}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:  # click's form of KeyboardInterrupt
        click.echo("onnxprune: interrupted; no output was written", err=True)
        sys.exit(130)
    except click.UsageError as err:  # one line too, naming where the help is
        where = f" (see `{err.ctx.command_path} --help`)" if err.ctx else ""
        click.echo(f"onnxprune: error: {err.format_message()}{where}", err=True)
        sys.exit(err.exit_code)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        click.echo("onnxprune: interrupted; no output was written", err=True)
        sys.exit(130)
    except Exception as err:  # a bug, not a user error: still one line, the traceback with -v
        if "-v" in sys.argv or "--verbose" in sys.argv:
            log.exception("internal error")
        first = first_line(err, 200)
        click.echo(f"onnxprune: internal error: {type(err).__name__}: {first} — no output was written; "
                   "run with -v and report the traceback", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
