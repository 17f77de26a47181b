"""The language-model presets carry Table 12's values (mamba-paper.md §3.1)."""

from __future__ import annotations

import pytest

from mambabench.tasks.lm import warn_if_logits_outgrow_memory
from tests.conftest import compose_config


@pytest.mark.parametrize(
    "size, layers, width, steps, lr",
    [
        ("125m", 24, 768, 4800, 3e-3),
        ("350m", 48, 1024, 13500, 1.5e-3),
        ("760m", 48, 1536, 29000, 1.25e-3),
        ("1b3", 48, 2048, 50000, 1e-3),
    ],
)
def test_mamba_scaling_sizes_improved_recipe(tmp_path, size, layers, width, steps, lr) -> None:
    cfg = compose_config([f"experiment=lm/scaling/{size}", "model=mamba"], tmp_path)
    assert (cfg.model.n_layer, cfg.model.d_model, cfg.trainer.max_steps) == (layers, width, steps)
    assert cfg.optimizer.lr == pytest.approx(lr) and list(cfg.optimizer.betas) == [0.9, 0.95]
    assert cfg.scheduler.min_lr == pytest.approx(1e-5)
    assert cfg.global_batch_size * cfg.data.seq_len == 2**19 and cfg.data.tokenizer == "gpt2"


def test_transformer_gpt3_recipe_and_heads(tmp_path) -> None:
    cfg = compose_config(["experiment=lm/scaling/1b3", "model=transformer", "lm.recipe=gpt3"], tmp_path)
    assert (cfg.model.n_layer, cfg.model.d_model, cfg.model.mixer.n_heads) == (24, 2048, 32)
    assert cfg.optimizer.lr == pytest.approx(2e-4) and list(cfg.optimizer.betas) == [0.9, 0.999]
    assert cfg.scheduler.min_lr == pytest.approx(2e-5)
    hyena = compose_config(["experiment=lm/scaling/125m", "model=hyena"], tmp_path)
    assert hyena.model.n_layer == 18


def test_mini_byte_and_hybrid_presets(tmp_path) -> None:
    mini = compose_config(["experiment=lm/mini/transformerpp", "lm.size=30m"], tmp_path)
    assert (mini.model.n_layer, mini.model.d_model, mini.model.mixer.n_heads) == (12, 448, 7)
    byte = compose_config(["experiment=lm/byte/mini"], tmp_path)
    assert byte.data.tokenizer == "bytes" and byte.task.bytes_per_token == 1.0
    hybrid = compose_config(["experiment=lm/hybrid/mini"], tmp_path)
    assert hybrid.model.mixer.every == 2 and hybrid.model.mixer.secondary.n_heads == 3


def test_cpu_override_and_the_memory_warning_that_points_to_it(tmp_path, caplog) -> None:
    cfg = compose_config(["experiment=lm/mini/mamba", "+lm=cpu"], tmp_path)
    assert (cfg.model.d_model, cfg.model.n_layer, cfg.data.seq_len) == (128, 8, 128)
    assert cfg.global_batch_size * cfg.data.seq_len == 512 and cfg.trainer.max_steps == 200
    with caplog.at_level("WARNING"):
        warn_if_logits_outgrow_memory(512, 50257, total_bytes=16 * 2**30)  # +lm=cpu: 0.3 GB, quiet
        assert not caplog.records
        warn_if_logits_outgrow_memory(16384, 50257, total_bytes=16 * 2**30)  # the GPU preset on a CPU
    assert "~9.2 GB for the logits" in caplog.text and "+lm=cpu" in caplog.text
