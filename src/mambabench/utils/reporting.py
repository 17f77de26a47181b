"""Console output: the resolved config at the start, the final metrics as a table at the end.

On a terminal the config is a rich tree; in a log file it is plain YAML under one heading per group,
which can be copied as is (tree guides would sit inside every line, and rich crops tree lines at the
page width). Both summaries also go to the run's log file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from rich import get_console
from rich.table import Table
from rich.tree import Tree

from mambabench.utils.console import stdout_is_terminal

_TOP_GROUPS = ("data", "model", "task", "optimizer", "scheduler", "trainer")

log = logging.getLogger("mambabench")


def _config_sections(cfg: DictConfig) -> list[tuple[str, str]]:
    """(heading, resolved YAML) for each group that defines the run, other top-level keys as ``run``."""
    sections = [
        (group, OmegaConf.to_yaml(cfg[group], resolve=True).rstrip())
        for group in _TOP_GROUPS
        if group in cfg and cfg[group] is not None
    ]
    rest = {k: v for k, v in cfg.items() if k not in (*_TOP_GROUPS, "callbacks", "logger", "paths", "hydra")}
    if rest:
        sections.append(("run", OmegaConf.to_yaml(OmegaConf.create(rest), resolve=True).rstrip()))
    return sections


def print_config(cfg: DictConfig) -> None:
    """Print the groups that define the run: a tree on a terminal, plain YAML in a log file."""
    sections = _config_sections(cfg)
    plain = "\n".join(
        f"{name}:\n" + "\n".join(f"  {line}" for line in text.splitlines()) for name, text in sections
    )
    log.debug("resolved config:\n%s", plain)
    if not stdout_is_terminal():
        print(f"config\n{plain}", flush=True)
        return
    tree = Tree("config", guide_style="dim")
    for name, text in sections:
        tree.add(f"[bold]{name}[/]").add(text)
    get_console().print(tree)


def print_metrics(metrics: dict[str, float], output_dir: Path, wall_time_s: float) -> None:
    """A table of the final val/test metrics (the last training step's when the run had neither, as in
    ``debug=overfit``) and the run directory (on one line, whatever its length)."""
    table = Table(title="final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    names = sorted(k for k in metrics if k.startswith(("val/", "test/"))) or sorted(
        k for k in metrics if k.startswith("train/")
    )
    for name in names:
        table.add_row(name, f"{metrics[name]:.4f}")
    console = get_console()
    console.print(table)
    console.print(f"wall time {wall_time_s:.1f} s; run directory: [bold]{output_dir}[/]", soft_wrap=True)
    log.debug("final metrics: %s", ", ".join(f"{name} {metrics[name]:.4f}" for name in names))
    log.debug("wall time %.1f s; run directory: %s", wall_time_s, output_dir)
