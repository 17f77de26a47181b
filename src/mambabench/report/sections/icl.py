"""In-context learning: error vs number of in-context examples, one figure per function class (presets
``icl/<function class>/<scale>``), one line per model, from the ``icl_curves`` a run's summary carries
(``{stage: {loader: [error after 0, 1, ... examples]}}``)."""

from __future__ import annotations

from pathlib import Path

from mambabench.report.figure import Series, line_figure
from mambabench.report.runs import Run, latest
from mambabench.report.sections.common import setting


def render(runs: list[Run], out_dir: Path) -> list[Path]:
    outputs: list[Path] = []
    mine = [r for r in runs if (r.experiment or "").startswith("icl/") and r.summary.get("icl_curves")]
    for experiment in sorted({r.experiment for r in mine}):
        group = [r for r in mine if r.experiment == experiment]
        series = []
        for model in sorted({r.model_name or "?" for r in group}):
            run = latest(r for r in group if r.model_name == model)
            curves = run.summary["icl_curves"]
            stage = curves.get("test") or curves.get("validate") or curves.get("val") or {}
            for loader, errors in sorted(stage.items()):
                label = model if len(stage) == 1 else f"{model} ({loader})"
                series.append(
                    Series(
                        label,
                        [(float(k), float(e)) for k, e in enumerate(errors)],
                        dashed=loader != next(iter(stage)),
                    )
                )
        if series:
            name = "icl_" + experiment.removeprefix("icl/").replace("/", "_")
            outputs += line_figure(
                out_dir / name,
                series,
                title=f"In-context learning: {experiment}",
                xlabel="in-context examples",
                ylabel="error",
                note=setting(group),
            )
    return outputs
