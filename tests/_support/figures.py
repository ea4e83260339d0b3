"""Figures a test established (requests, errors, rows, cases), kept for an end-of-run table.

A suite's conftest hands out :data:`FIGURES` as a fixture and prints :func:`table` from its
``pytest_terminal_summary`` hook, so the figures show whether or not output is captured.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Figures:
    """Rows of (test, figure, value), in the order they were recorded."""

    rows: list[dict[str, str]] = field(default_factory=list)

    def record(self, test: str, figure: str, value: Any) -> None:
        self.rows.append({"test": test, "figure": figure, "value": str(value)})

    def table(self) -> list[str]:
        """The rows as a Markdown table, grouped by test (recording order kept within one)."""
        if not self.rows:
            return []
        width = max(len(r["test"]) for r in self.rows)
        fig_width = max(len(r["figure"]) for r in self.rows)
        lines = [
            f"| {'test':<{width}} | {'figure':<{fig_width}} | value |",
            f"| {'-' * width} | {'-' * fig_width} | ----- |",
        ]
        for row in sorted(self.rows, key=lambda r: r["test"]):  # stable: keeps order per test
            lines.append(
                f"| {row['test']:<{width}} | {row['figure']:<{fig_width}} | {row['value']} |"
            )
        return lines


#: the process-wide collection (one per pytest process; xdist workers send theirs home)
FIGURES = Figures()
