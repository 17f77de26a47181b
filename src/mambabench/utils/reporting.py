"""Console output: the resolved config as a tree at the start, the final metrics as a table at the end."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich import get_console
from rich.table import Table
from rich.tree import Tree

_TOP_GROUPS = ("data", "model", "task", "optimizer", "scheduler", "trainer")


def print_config(cfg: DictConfig) -> None:
    """Print the groups that define the run as a tree (other keys in one extra branch)."""
    tree = Tree("config", guide_style="dim")
    for group in _TOP_GROUPS:
        if group in cfg and cfg[group] is not None:
            tree.add(f"[bold]{group}[/]").add(OmegaConf.to_yaml(cfg[group], resolve=True).rstrip())
    rest = {k: v for k, v in cfg.items() if k not in (*_TOP_GROUPS, "callbacks", "logger", "paths", "hydra")}
    if rest:
        tree.add("[bold]run[/]").add(OmegaConf.to_yaml(OmegaConf.create(rest), resolve=True).rstrip())
    get_console().print(tree)


def print_metrics(metrics: dict[str, float], output_dir: Path, wall_time_s: float) -> None:
    """A table of the final val/test metrics and the run directory."""
    table = Table(title="final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in sorted(k for k in metrics if k.startswith(("val/", "test/"))):
        table.add_row(name, f"{metrics[name]:.4f}")
    console = get_console()
    console.print(table)
    console.print(f"wall time {wall_time_s:.1f} s; run directory: [bold]{output_dir}[/]")
