"""Every model x data pair composes and runs one train/val/test batch (debug=fdr), and every
experiment preset runs one training batch on CPU."""

from __future__ import annotations

import pytest
from omegaconf import open_dict

from mambabench.utils.run import train
from tests.conftest import config_options, experiment_names

MODELS = [m for m in config_options("model")]
DATA = config_options("data")
# pairs that cannot work together by design, with the reason (checked to fail clearly elsewhere)
INCOMPATIBLE: dict[tuple[str, str], str] = {}

# big presets are shrunk in width/depth for a CPU smoke test; the paper shapes are pinned by
# parameter-count tests instead.
SHRINK = ["model.d_model=32", "model.n_layer=2"]


def _pairs() -> list[tuple[str, str]]:
    return [(m, d) for m in MODELS for d in DATA if (m, d) not in INCOMPATIBLE]


@pytest.mark.parametrize(("model", "data"), _pairs())
def test_model_data_fast_dev_run(make_config, model: str, data: str) -> None:
    overrides = [f"model={model}", f"data={data}", "debug=fdr", "data.batch_size=2", "logger=[]", *SHRINK]
    cfg = make_config(overrides)
    metrics = train(cfg)
    assert "train/loss" in metrics or any(k.startswith("test/") for k in metrics)


@pytest.mark.parametrize("experiment", experiment_names())
def test_experiment_runs_one_training_batch(make_config, experiment: str) -> None:
    cfg = make_config([f"experiment={experiment}", "logger=[]", "callbacks=none"])
    with open_dict(cfg):
        # one training batch at the preset's sequence length, batch of 2, no evaluation
        cfg.data.batch_size = 2
        cfg.trainer.max_steps = 1
        cfg.trainer.limit_val_batches = 0
        cfg.trainer.val_check_interval = None
        cfg.trainer.check_val_every_n_epoch = 1
        cfg.test = False
    metrics = train(cfg)
    assert metrics["train/loss"] > 0
