"""Every model x data pair composes and runs one train/val/test batch (debug=fdr), and every
experiment preset runs one training batch on CPU (presets named ``paper`` at toy width, depth, length and
batch: the real preset is composed and built, so its config errors surface; its paper values are pinned
in preset tests such as tests/unit/test_dna_presets.py)."""

from __future__ import annotations

import pytest
from omegaconf import DictConfig, open_dict

from mambabench.utils.run import train
from tests.conftest import config_options, experiment_names

MODELS = [m for m in config_options("model")]
DATA = config_options("data")
# pairs that cannot work together by design, with the reason (checked to fail clearly elsewhere)
INCOMPATIBLE: dict[tuple[str, str], str] = {}

# big presets are shrunk in width/depth for a CPU smoke test; the paper shapes are pinned by
# parameter-count tests instead.
SHRINK = ["model.d_model=32", "model.n_layer=2"]


# presets named `paper` (paper-scale width, depth, length and batch) run at these sizes here
PAPER_TOY = {"d_model": 32, "n_layer": 2, "seq_len": 128}


def shrink_paper_preset(cfg: DictConfig) -> None:
    """Toy sizes for a composed ``.../paper`` preset, keeping every mechanism it switches on: gradient
    accumulation (global_batch_size) and sequence-length warmup with constant tokens per step still run,
    at two micro-batches per optimizer step and a first stage at half the toy length."""
    with open_dict(cfg):
        cfg.model.d_model, cfg.model.n_layer = PAPER_TOY["d_model"], PAPER_TOY["n_layer"]
        for key in ("seq_len", "eval_seq_len", "train_seq_len"):
            if cfg.data.get(key):
                cfg.data[key] = min(int(cfg.data[key]), PAPER_TOY["seq_len"])
        if cfg.get("global_batch_size"):
            cfg.global_batch_size = 2 * cfg.data.batch_size
        warmup = (cfg.get("callbacks") or {}).get("seqlen_warmup")
        if warmup:
            seq_len = int(cfg.data.seq_len)
            warmup.min_seq_len = min(int(warmup.min_seq_len), seq_len // 2)
            if warmup.get("tokens_per_step"):
                warmup.tokens_per_step = 2 * cfg.data.batch_size * seq_len
            warmup.max_tokens_per_batch = None


# data that needs a task its config does not select (data=species / great_apes select classification)
DATA_TASK: dict[str, list[str]] = {}


def _pairs() -> list[tuple[str, str]]:
    return [(m, d) for m in MODELS for d in DATA if (m, d) not in INCOMPATIBLE]


@pytest.mark.parametrize(("model", "data"), _pairs())
def test_model_data_fast_dev_run(make_config, model: str, data: str) -> None:
    overrides = [f"model={model}", f"data={data}", *DATA_TASK.get(data, []), "debug=fdr", "data.batch_size=2",
                 "logger=[]", *SHRINK]
    cfg = make_config(overrides)
    metrics = train(cfg)
    assert "train/loss" in metrics or any(k.startswith("test/") for k in metrics)


@pytest.mark.parametrize("experiment", experiment_names())
def test_experiment_runs_one_training_batch(make_config, experiment: str) -> None:
    cfg = make_config([f"experiment={experiment}", "logger=[]", "callbacks=none"])
    with open_dict(cfg):
        # one training batch at the preset's sequence length (toy sizes for paper presets), batch of 2,
        # no evaluation
        cfg.data.batch_size = 2
        cfg.trainer.max_steps = 1
        cfg.trainer.limit_val_batches = 0
        cfg.trainer.val_check_interval = None
        cfg.trainer.check_val_every_n_epoch = 1
        cfg.test = False
    if experiment.rsplit("/", 1)[-1] == "paper":
        shrink_paper_preset(cfg)
    metrics = train(cfg)
    assert metrics["train/loss"] > 0
