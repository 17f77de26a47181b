"""Figure 4: Pile perplexity vs training FLOPs, one line per architecture (presets ``lm/...``).

FLOPs are estimated as 6 x parameters x training tokens (Kaplan et al., arXiv:2001.08361), the usual
dense-model count; the paper's figure gives its values only as a plot, so ours stand alone."""

from __future__ import annotations

from pathlib import Path

from mambabench.report.figure import Series, line_figure
from mambabench.report.paper import PAPER, paper_values
from mambabench.report.runs import Run
from mambabench.report.table import Cell, Table

PERPLEXITY = ("test/perplexity", "val/perplexity")


def training_flops(run: Run) -> float | None:
    params = (run.summary.get("params") or {}).get("total")
    tokens = run.summary.get("train_tokens")
    return 6.0 * params * tokens if params and tokens else None


def render(runs: list[Run], out_dir: Path) -> list[Path]:
    mine = [r for r in runs if (r.experiment or "").startswith("lm/")]
    if not mine:
        return []
    by_context: dict[int, dict[str, list[tuple[float, float]]]] = {}
    table = Table(
        "figure4_runs",
        "Figure 4: language-model runs",
        f"{paper_values()['figures']['figure4']}, {PAPER}",
        "FLOPs = 6 x parameters x training tokens",
        ["Preset", "Model", "Context"],
        ["Params (M)", "FLOPs (1e15)", "Perplexity"],
        digits=2,
    )
    for run in mine:
        flops, ppl = training_flops(run), run.metric(*PERPLEXITY)
        context = int(run.config("data.seq_len") or 0)
        if flops and ppl:
            by_context.setdefault(context, {}).setdefault(run.model_name or "?", []).append((flops, ppl))
        params = (run.summary.get("params") or {}).get("total")
        table.add(
            [str(run.experiment), str(run.model_name), str(context)],
            [
                Cell(params / 1e6 if params else None),
                Cell(flops / 1e15 if flops else None),
                Cell(ppl, None, run.run_dir if ppl is not None else None),
            ],
        )
    outputs = table.write(out_dir)
    for context, lines in sorted(by_context.items()):
        outputs += line_figure(
            out_dir / f"figure4_context{context}",
            [Series(model, pts) for model, pts in sorted(lines.items())],
            title=f"Scaling: perplexity vs FLOPs (context {context})",
            xlabel="training FLOPs",
            ylabel="test perplexity",
            logx=10,
            logy=True,
            note=f"paper: {paper_values()['figures']['figure4']}",
        )
    return outputs
