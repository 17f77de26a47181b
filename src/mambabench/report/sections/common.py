"""Helpers the sections share: describing a run's setting and scaling metrics to the paper's units."""

from __future__ import annotations

from collections.abc import Iterable

from mambabench.report.runs import Run


def percent(value: float | None) -> float | None:
    """Our accuracies are fractions; the paper prints percent."""
    return None if value is None else 100.0 * value


def setting(runs: Iterable[Run]) -> str:
    """``data=selective_copying seq_len=256, d_model=64 x 2 layers, 1500 steps (8 runs)`` for a group."""
    runs = list(runs)
    if not runs:
        return "no runs yet"
    first = runs[0]
    data = first.choices.get("data", "?")
    length = first.config("data.seq_len") or first.config("data.train_seq_len")
    parts = [f"`{first.experiment}`: data={data}" + (f" at length {length}" if length else "")]
    widths = sorted({r.config("model.d_model") for r in runs if r.config("model.d_model")})
    depth = first.config("model.n_layer")
    if widths and depth:  # the induction-heads models differ in width (Mamba 64, the others 128)
        parts.append(f"d_model={'/'.join(map(str, widths))} x {depth} layers")
    steps = sorted({r.summary.get("global_step") for r in runs if r.summary.get("global_step") is not None})
    if steps:
        parts.append(f"{steps[0]}" + (f"-{steps[-1]}" if len(steps) > 1 else "") + " steps")
    parts.append(f"{len(runs)} run(s)")
    return ", ".join(parts)


def by_scale(runs: Iterable[Run], topic: str) -> dict[str, list[Run]]:
    """Runs of preset ``<topic>/<scale>`` grouped by scale; ``{"": []}`` when there are none, so that a
    table of missing cells is still written."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        if run.topic == topic:
            groups.setdefault(run.scale or "", []).append(run)
    return groups or {"": []}


def file_name(base: str, scale: str) -> str:
    return f"{base}_{scale}" if scale else base
