"""Line figures (PNG and SVG) with matplotlib: one line per model, ours, with the paper's where it has numbers."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@dataclass
class Series:
    """One line: points (x, y); ``oom`` x positions that ran out of memory (drawn as crosses on the axis)."""

    label: str
    points: list[tuple[float, float]]
    oom: list[float] = field(default_factory=list)
    dashed: bool = False
    color: int | None = None  # colour index; lines that share one (ours and the paper's) share a colour


def line_figure(
    path: Path,
    series: list[Series],
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    logx: int | None = None,
    logy: bool = False,
    vline: tuple[float, str] | None = None,
    hline: tuple[float, str] | None = None,
    note: str | None = None,
) -> list[Path]:
    """Draw ``series`` and save ``path`` with .png and .svg suffixes. ``logx`` is the x-axis log base."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for index, s in enumerate(series):
        color = f"C{(index if s.color is None else s.color) % 10}"
        pts = sorted(s.points)
        if pts:
            ax.plot(
                [p[0] for p in pts],
                [p[1] for p in pts],
                marker="o",
                ms=3,
                color=color,
                ls="--" if s.dashed else "-",
                label=s.label,
            )
        if s.oom:  # on the x axis itself (axes fraction 0), so log y axes show them too
            ax.plot(
                s.oom,
                [0.0] * len(s.oom),
                transform=ax.get_xaxis_transform(),
                marker="x",
                ls="none",
                color=color,
                ms=8,
                label=f"{s.label}: out of memory" if not pts else None,
                clip_on=False,
            )
    if logx:
        ax.set_xscale("log", base=logx)
    if logy:
        ax.set_yscale("log")
    if vline:
        ax.axvline(vline[0], color="gray", ls=":", lw=1)
        ax.annotate(
            vline[1],
            (vline[0], 1.0),
            xycoords=("data", "axes fraction"),
            rotation=90,
            va="top",
            ha="right",
            fontsize=8,
            color="gray",
        )
    if hline:
        ax.axhline(hline[0], color="gray", ls="--", lw=0.8)
        ax.annotate(
            hline[1],
            (1.0, hline[0]),
            xycoords=("axes fraction", "data"),
            ha="right",
            va="bottom",
            fontsize=8,
            color="gray",
        )
    if any(s.oom for s in series):
        ax.annotate("x on the axis: out of memory", (0.01, 0.01), xycoords="axes fraction", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="dimgray", va="bottom")
    ax.grid(alpha=0.3)
    if any(s.points or s.oom for s in series):
        ax.legend(fontsize=8)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    outs = [path.with_suffix(".png"), path.with_suffix(".svg")]
    for out in outs:
        fig.savefig(out, dpi=120)
    plt.close(fig)
    return outs
