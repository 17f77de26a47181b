"""hparams_search=lr_optuna composes the Optuna sweeper over a log-uniform learning rate (runs where the
optional `sweep` extra, hydra-optuna-sweeper, is installed)."""

from __future__ import annotations

import pytest


def test_lr_optuna_search_composes(make_config) -> None:
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='needs pip install -e ".[sweep]"')
    cfg = make_config(["hparams_search=lr_optuna", "experiment=induction_heads/mini"])
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and sweeper.direction == "minimize"
    assert sweeper.params["optimizer.lr"] == "tag(log, interval(1e-5, 1e-2))"
    assert cfg.optimized_metric == "val/loss" and cfg.hydra.mode.name == "MULTIRUN"
