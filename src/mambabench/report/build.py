"""Write every table and figure of the report for a set of runs, plus an index page."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterable
from pathlib import Path

from mambabench.report.runs import Run
from mambabench.report.sections import (
    ablations,
    audio,
    dna,
    icl,
    induction_heads,
    language,
    speed_memory,
    table1,
)

log = logging.getLogger(__name__)

# (section, what it shows); each writes what its runs allow and marks the rest missing
SECTIONS = (
    (table1, "Table 1: selective copying, architecture x layer"),
    (induction_heads, "Table 11 / Table 2 figure: induction heads, accuracy vs test length"),
    (ablations, "Tables 6-10: ablations"),
    (language, "Figure 4: scaling laws, perplexity vs FLOPs"),
    (dna, "Figure 5 and Table 13: DNA model size, context length, great apes"),
    (audio, "Figure 7 and Table 4: YouTubeMix and SC09"),
    (icl, "In-context learning curves"),
)
SPEED_MEMORY_TITLE = "Figure 8 and Table 15: speed and memory (from the benchmark CSVs)"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_report(
    runs: list[Run], out_dir: Path, command: str = "", bench: dict[str, list[Path]] | None = None
) -> list[Path]:
    """Render every section into ``out_dir``; returns the files written (index ``README.md`` last).
    ``bench``: the benchmark CSVs by kind (:func:`mambabench.report.bench_csv.find_bench_csvs`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    lines = [
        "# Results: ours beside the paper's",
        "",
        f"Generated from {len(runs)} run(s) at commit `{_commit()}`"
        + (f" by `{command}`" if command else "")
        + ".",
        "",
    ]
    rendered = [(title, section.render(runs, out_dir)) for section, title in SECTIONS]
    rendered.append((SPEED_MEMORY_TITLE, speed_memory.render(bench or {}, out_dir)))
    for title, files in rendered:
        written += files
        lines.append(f"## {title}")
        lines.append("")
        for path in files:
            if path.suffix == ".md":
                lines.append(f"- [{path.stem}]({path.name})")
            elif path.suffix == ".png":
                lines.append(f"- ![{path.stem}]({path.name})")
        if not files:
            lines.append("- no runs yet")
        lines.append("")
    unplaced = sorted({r.experiment or "(no preset)" for r in runs if not _placed(r)})
    if unplaced:
        lines += ["## Runs of other presets (in no paper table)", ""] + [f"- `{e}`" for e in unplaced] + [""]
    index = out_dir / "README.md"
    index.write_text("\n".join(lines))
    log.info("wrote %d files to %s", len(written) + 1, out_dir)
    return written + [index]


def _placed(run: Run) -> bool:
    name = run.experiment or ""
    return name.startswith(("ablations/", "induction_heads/", "lm/", "dna/", "audio/", "icl/"))


def summary_lines(runs: Iterable[Run]) -> list[str]:
    """One line per preset: how many runs were read."""
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.experiment or "(no preset)"] = counts.get(run.experiment or "(no preset)", 0) + 1
    return [f"{name}: {count} run(s)" for name, count in sorted(counts.items())]
