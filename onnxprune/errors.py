"""The one exception type users see."""

from __future__ import annotations

__all__ = ["OnnxpruneError", "QualityBudgetExceeded", "first_line"]


def first_line(err: BaseException, limit: int = 300) -> str:
    """What a foreign exception says, fit for one line of ours: its first line, or its type."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


class OnnxpruneError(Exception):
    """A failure the user can act on; the message says what was wrong and what to do.

    The library raises only this for user-facing problems and never prints or exits;
    the CLI turns it into one line on stderr and a non-zero exit code.
    """


class QualityBudgetExceeded(OnnxpruneError):
    """The pruned model lost more quality than ``--max-drop`` allows: no model, but the report
    (``report``) so the user can see why."""

    def __init__(self, message: str, report) -> None:  # a report.Report
        super().__init__(message)
        self.report = report
