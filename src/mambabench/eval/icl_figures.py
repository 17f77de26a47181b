"""Figures of the in-context regression study, drawn from the rows of ``curves.csv`` / ``probes.csv``.

- :func:`plot_error_curves`: normalised squared error vs number of in-context examples, one line per model
  and baseline, one panel per evaluation set (in distribution, extrapolation, out of distribution), one
  figure per function family (as Grazzi et al., arXiv 2402.03170, Fig. 1-2). The number of examples seen
  in training is marked.
- :func:`plot_probe_errors`: probe error vs relative depth, one panel per model, one line per number of
  examples (Grazzi et al., Fig. 3).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

MODEL_STYLE = {"linestyle": "-", "linewidth": 2.0, "marker": "o", "markersize": 3}
BASELINE_STYLE = {"linestyle": "--", "linewidth": 1.2}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.png", out_dir / f"{stem}.svg"]
    for path in paths:
        fig.savefig(path, dpi=120, bbox_inches="tight")
    return paths


def plot_error_curves(rows: Sequence[dict], out_dir: str | Path, log_scale: bool = False) -> list[Path]:
    """One figure per family from curve rows (``kind, name, family, loader, examples, train_points, error``);
    returns the written PNG and SVG paths."""
    plt = _pyplot()
    by_family: dict[str, dict[str, dict[tuple[str, str], list[tuple[int, float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    train_points: dict[str, int] = {}
    for row in rows:
        family, loader = row["family"], row["loader"]
        by_family[family][loader][(row["kind"], row["name"])].append(
            (int(row["examples"]), float(row["error"]))
        )
        train_points[family] = int(row.get("train_points") or 0)
    written = []
    for family, loaders in by_family.items():
        names = list(loaders)
        fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 3.8), squeeze=False)
        for ax, loader in zip(axes[0], names):
            for (kind, name), points in sorted(loaders[loader].items()):
                points.sort()
                style = MODEL_STYLE if kind == "model" else BASELINE_STYLE
                ax.plot([p[0] for p in points], [p[1] for p in points], label=name, **style)
            if train_points.get(family):
                ax.axvline(train_points[family] - 1, color="grey", linestyle=":", linewidth=1)
            ax.set_title(f"{family}: {loader}")
            ax.set_xlabel("in-context examples")
            ax.set_ylabel("squared error / d")
            if log_scale:
                ax.set_yscale("log")
            else:  # baselines such as averaging can be far off: keep the models' range readable
                model_max = max(
                    (e for (kind, _), pts in loaders[loader].items() if kind == "model" for _, e in pts),
                    default=1.0,
                )
                ax.set_ylim(0, max(1.5, 1.3 * model_max))
            ax.grid(alpha=0.3)
        axes[0][-1].legend(fontsize=8, loc="upper right")
        fig.tight_layout()
        written += _save(fig, Path(out_dir), f"icl_{family}_error_vs_examples")
        plt.close(fig)
    return written


def plot_probe_errors(
    rows: Sequence[dict], out_dir: str | Path, examples: Sequence[int] | None = None
) -> list[Path]:
    """One figure per family: probe error vs relative layer depth (0 = read-in, 1 = last layer) per model."""
    plt = _pyplot()
    by_family: dict[str, dict[str, dict[int, list[tuple[float, float]]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list))
    )
    for row in rows:
        depth = int(row["layer"]) / max(1, int(row["n_layer"]))
        by_family[row["family"]][row["name"]][int(row["examples"])].append((depth, float(row["error"])))
    written = []
    for family, models in by_family.items():
        fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.6), squeeze=False, sharey=True)
        for ax, (model, per_k) in zip(axes[0], sorted(models.items())):
            ks = sorted(per_k)
            chosen = (
                list(examples) if examples else sorted({ks[0], ks[len(ks) // 4], ks[len(ks) // 2], ks[-1]})
            )
            for k in [k for k in chosen if k in per_k]:
                points = sorted(per_k[k])
                ax.plot(
                    [p[0] for p in points],
                    [p[1] for p in points],
                    marker="o",
                    markersize=3,
                    label=f"{k} examples",
                )
            ax.set_title(f"{family}: {model}")
            ax.set_xlabel("relative layer depth")
            ax.set_ylabel("probe squared error / d")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        written += _save(fig, Path(out_dir), f"icl_{family}_probe_vs_layer")
        plt.close(fig)
    return written
