"""A results table with our value beside the paper's in every cell, written as Markdown and CSV.

A cell shows ``ours / paper``; ours links to the run folder that produced it. A cell without a run
says ``missing`` (never a filled-in number); ``oom`` marks a setting that ran out of memory; ``n/a`` one
the model cannot take at all (e.g. a length past its learned positions).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

MISSING = "missing"
OUT_OF_MEMORY = "oom"
NOT_APPLICABLE = "n/a"


@dataclass
class Cell:
    """ours: our value (None = no run; ``"oom"`` = ran out of memory); paper: the paper's value."""

    ours: float | str | None
    paper: float | str | None = None
    run_dir: Path | None = None


@dataclass
class Table:
    """``labels``: names of the leading text columns; ``values``: names of the value columns; each row is
    its label texts followed by one :class:`Cell` per value column."""

    name: str
    title: str
    source: str
    setting: str
    labels: list[str]
    values: list[str]
    rows: list[tuple[list[str], list[Cell]]] = field(default_factory=list)
    digits: int = 1

    def add(self, labels: list[str], cells: list[Cell]) -> None:
        if len(labels) != len(self.labels) or len(cells) != len(self.values):
            raise ValueError(
                f"table {self.name}: a row needs {len(self.labels)} labels and {len(self.values)} "
                f"cells, got {len(labels)} and {len(cells)}"
            )
        self.rows.append((labels, cells))

    def _number(self, value: float | str | None) -> str:
        if value is None:
            return ""
        return value if isinstance(value, str) else f"{value:.{self.digits}f}"

    def _ours(self, cell: Cell, out_dir: Path) -> str:
        if cell.ours is None:
            return f"*{MISSING}*"
        text = self._number(cell.ours)
        if cell.run_dir is None:
            return text
        return f"[{text}]({Path(os.path.relpath(cell.run_dir, out_dir)).as_posix()})"

    def missing_cells(self) -> int:
        return sum(cell.ours is None for _, cells in self.rows for cell in cells)

    def to_markdown(self, out_dir: Path) -> str:
        lines = [
            f"# {self.title}",
            "",
            f"Paper: {self.source}.",
            "",
            f"Ours: {self.setting}.",
            "",
            "Each cell: ours / paper; ours links to its run folder; *missing* = no run yet.",
            "",
        ]
        header = self.labels + self.values
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for labels, cells in self.rows:
            texts = [f"{self._ours(c, out_dir)} / {self._number(c.paper) or '-'}" for c in cells]
            lines.append("| " + " | ".join(labels + texts) + " |")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> list[Path]:
        """``<out_dir>/<name>.md`` and ``.csv`` (columns: labels, then ours / paper / run per value)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        md, table_csv = out_dir / f"{self.name}.md", out_dir / f"{self.name}.csv"
        md.write_text(self.to_markdown(out_dir))
        with open(table_csv, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(
                self.labels + [f"{v} {part}" for v in self.values for part in ("ours", "paper", "run")]
            )
            for labels, cells in self.rows:
                row = list(labels)
                for c in cells:
                    row += [
                        "" if c.ours is None else self._number(c.ours),
                        self._number(c.paper),
                        "" if c.run_dir is None else str(c.run_dir),
                    ]
                writer.writerow(row)
        return [md, table_csv]
