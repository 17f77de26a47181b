"""Every model x data pair composes, trains a few steps on one batch with a finite loss that falls, and
runs a val and a test batch; every experiment preset runs one training batch on CPU (presets named ``paper`` at toy width, depth, length and
batch: the real preset is composed and built, so its config errors surface; its paper values are pinned
in preset tests such as tests/unit/test_dna_presets.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from omegaconf import DictConfig, open_dict

from mambabench.utils.run import train
from tests.conftest import config_options, experiment_names

# model=pretrained needs a released checkpoint folder: tests/unit/test_pretrained.py builds one
MODELS = [m for m in config_options("model") if m != "pretrained"]
DATA = config_options("data")
# pairs that cannot work together by design, with the reason (checked to fail clearly elsewhere)
INCOMPATIBLE: dict[tuple[str, str], str] = {
    **{
        (
            m,
            "icl_regression",
        ): "real-vector prompts need a read-in model (model=icl/...; the icl presets run them)"
        for m in MODELS
    },
    **{
        (m, "fewshot_words"): "evaluation only (train=false task=fewshot_icl; tests/unit/test_fewshot_icl.py)"
        for m in MODELS
    },
}

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


# optimizer steps on one repeated batch after which its loss must have fallen, at this learning rate
LEARNING_STEPS, LEARNING_LR = 3, 1e-3


class LossHistory(L.Callback):
    """Trains every step on the first training batch (its tensors are put into each later batch dict) and
    writes to ``path`` (JSON) the training loss of every step and the loss on that batch before and after
    training (eval mode, no gradient): ``{"train": [...], "first_batch": [before, after]}``. (Lightning's
    ``overfit_batches`` would do the repeating, but it rebuilds the loader without its sampler.)"""

    def __init__(self, path: str) -> None:
        self.path, self.losses, self.first_batch, self.first = Path(path), [], None, []

    def _loss_on_first_batch(self, pl_module: L.LightningModule) -> float:
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            loss = float(pl_module.compute(self.first_batch)["loss"][0])
        pl_module.train(was_training)
        return loss

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.first_batch is None:
            self.first_batch = dict(batch)
            self.first.append(self._loss_on_first_batch(pl_module))
        else:
            batch.update(self.first_batch)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.losses.append(float(loss))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.first.append(self._loss_on_first_batch(pl_module))
        self.path.write_text(json.dumps({"train": self.losses, "first_batch": self.first}))


# data that needs a task other than the default task=lm
# data that needs a task its config does not select (data=species / great_apes select classification)
DATA_TASK: dict[str, list[str]] = {}
# data whose default length is long (one second of audio) runs shorter here
DATA_SHRINK = {"sc09": ["data.seq_len=256"], "youtubemix": ["data.seq_len=256"]}
# U-Nets have (2 x levels + 1) x n_layer layers: one layer per level, narrower, here
UNET_SHRINK = ["model.d_model=16", "model.n_layer=1", "model.pool=[2,2]"]
MODEL_SHRINK = {
    "sashimi": UNET_SHRINK,
    "sashimi_s4": UNET_SHRINK,
    "wavenet": ["model.n_blocks=1", "model.skip_channels=16", "model.end_channels=16"],
    "samplernn": ["model.embed_dim=8", "model.frame_sizes=[16,8]"],
}


def _pairs() -> list[tuple[str, str]]:
    return [(m, d) for m in MODELS for d in DATA if (m, d) not in INCOMPATIBLE]


@pytest.mark.parametrize(("model", "data"), _pairs())
def test_model_data_learns_one_batch(make_config, tmp_path: Path, model: str, data: str) -> None:
    """A few optimizer steps on one repeated batch: every loss is finite and the batch's loss falls; then one
    val and one test batch run (debug=fdr's one-batch run, stretched to LEARNING_STEPS steps)."""
    history = tmp_path / "losses.json"
    overrides = [
        f"model={model}",
        f"data={data}",
        *DATA_TASK.get(data, []),
        *DATA_SHRINK.get(data, []),
        "debug=fdr",
        "data.batch_size=2",
        "logger=[]",
        "callbacks=none",
        f"optimizer.lr={LEARNING_LR}",
        *SHRINK,
        *MODEL_SHRINK.get(model, []),
    ]
    cfg = make_config(overrides)
    with open_dict(cfg):
        cfg.trainer.fast_dev_run = False
        cfg.trainer.enable_checkpointing = False
        cfg.trainer.max_steps = LEARNING_STEPS
        cfg.trainer.limit_train_batches = 1
        cfg.trainer.max_epochs = LEARNING_STEPS
        cfg.trainer.limit_val_batches = 1
        cfg.trainer.limit_test_batches = 1
        cfg.trainer.val_check_interval = None
        cfg.trainer.check_val_every_n_epoch = LEARNING_STEPS  # one validation, after the last step
        cfg.callbacks = {"loss_history": {"_target_": f"{__name__}.LossHistory", "path": str(history)}}
    metrics = train(cfg)
    history = json.loads(history.read_text())
    losses, (before, after) = history["train"], history["first_batch"]
    assert len(losses) == LEARNING_STEPS, losses
    assert all(math.isfinite(x) for x in [*losses, before, after]), (
        f"{model} x {data}: non-finite loss {history}"
    )
    assert after < before, (
        f"{model} x {data}: the loss on the repeated training batch did not fall: {history}"
    )
    assert any(k.startswith("test/") for k in metrics), sorted(metrics)


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
    if experiment.rsplit("/", 1)[-1] == "paper" or experiment.startswith(
        "lm/"
    ):  # LM presets: at toy size too
        shrink_paper_preset(cfg)
        if "lm" in cfg:
            with open_dict(cfg):
                cfg.lm.n_heads = 2  # attention heads that divide the toy width
    metrics = train(cfg)
    assert math.isfinite(metrics["train/loss"]) and metrics["train/loss"] > 0
