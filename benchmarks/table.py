"""A benchmark's table: each line printed as it is measured, the whole saved to
benchmarks/results/<name> at the end."""

from __future__ import annotations

from pathlib import Path

__all__ = ["Table"]

RESULTS = Path(__file__).resolve().parent / "results"


class Table:
    def __init__(self, name: str, *header: str) -> None:
        self.path = RESULTS / name
        self.lines: list[str] = []
        for line in header:
            self.add(line)

    def add(self, line: str) -> None:
        self.lines.append(line)
        print(line, flush=True)

    def save(self) -> None:
        self.path.write_text("\n".join(self.lines) + "\n")
        print(f"saved benchmarks/results/{self.path.name}")
