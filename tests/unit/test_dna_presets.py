"""The DNA paper presets, composed unshrunk, carry mamba-paper.md §4's values (sizes, LRs, lengths, batch,
schedule, sequence-length warmup). tests/integration/test_every_config.py runs them for one batch at toy
sizes; this file checks the paper-scale values that the toy run overrides."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from mambabench.data.seqlen_warmup import SequenceLengthWarmup, warmup_lengths
from mambabench.utils.build import build_network

# mamba-paper.md §4.2: (Transformer/Hyena blocks, width, approx. params); Mamba doubles the blocks
PAPER_SIZES = {
    "250K": (4, 64, 250e3),
    "700K": (5, 96, 700e3),
    "1_4M": (6, 128, 1.4e6),
    "3_5M": (7, 192, 3.5e6),
    "7M": (8, 256, 7.0e6),
    "19M": (10, 384, 19.3e6),
    "40M": (12, 512, 40.7e6),
}


class _Vocab:  # stands in for the data module: build_network only reads vocab_size
    vocab_size = 12


def _recipe(cfg, lr: float) -> None:
    """AdamW (0.9, 0.95), wd 0.1, clipping: the §4.1 recipe shared by all DNA presets."""
    assert cfg.optimizer._target_ == "torch.optim.AdamW"
    assert cfg.optimizer.lr == pytest.approx(lr)
    assert list(cfg.optimizer.betas) == [0.9, 0.95] and cfg.optimizer.weight_decay == pytest.approx(0.1)
    assert cfg.scheduler._target_.endswith("cosine_with_warmup")


@pytest.mark.parametrize("size", list(PAPER_SIZES))
def test_model_size_paper_sizes_and_parameter_counts(make_config, size: str) -> None:
    blocks, width, params = PAPER_SIZES[size]
    cfg = make_config(["experiment=dna/model_size/paper", f"dna.size={size}"])
    assert (cfg.model.n_layer, cfg.model.d_model) == (2 * blocks, width)
    total = sum(p.numel() for p in build_network(cfg, _Vocab()).parameters())
    assert total == pytest.approx(params, rel=0.06), total  # 250K: 262,720 (the paper rounds)


def test_model_size_paper_recipe(make_config) -> None:
    cfg = make_config(["experiment=dna/model_size/paper"])
    assert cfg.data._target_.endswith("HG38DataModule") and cfg.task._target_.endswith("LanguageModelingTask")
    assert cfg.data.seq_len == 1024 and cfg.global_batch_size == 1024  # 2^20 tokens per step
    assert cfg.trainer.max_steps == 10_000  # 10B tokens
    assert cfg.scheduler.warmup_fraction == pytest.approx(0.1)
    _recipe(cfg, 8e-3)  # Mamba's best; Transformer++/HyenaDNA 2e-3
    other = make_config(
        ["experiment=dna/model_size/paper", "model=hyena", "dna.layer_multiplier=1", "optimizer.lr=2e-3"],
        subdir="hyena",
    )
    assert (other.model.n_layer, other.model.d_model, other.optimizer.lr) == (6, 128, 2e-3)


def test_context_length_paper(make_config) -> None:
    cfg = make_config(["experiment=dna/context_length/paper"])
    assert (cfg.model.n_layer, cfg.model.d_model) == (12, 128)  # the 1.4M model, Mamba blocks doubled
    assert cfg.data.seq_len == 1 << 20 and cfg.trainer.max_steps == 20_000
    _recipe(cfg, 8e-3)
    warm = cfg.callbacks.seqlen_warmup
    assert (warm.min_seq_len, warm.epochs_per_stage, warm.tokens_per_step) == (1 << 10, 2, 1 << 24)
    callback = instantiate(warm)
    assert isinstance(callback, SequenceLengthWarmup)
    callback.lengths, callback.max_tokens = warmup_lengths(cfg.data.seq_len, warm.min_seq_len), 1 << 21
    assert callback.lengths == [1 << k for k in range(10, 21)]
    # 2^24 tokens per step at every length: 16384 windows of 2^10 ... 16 of 2^20
    for length in callback.lengths:
        micro, accumulation = callback.plan(length)
        assert micro * accumulation * length == 1 << 24
    assert [callback.length_for_epoch(e) for e in (0, 1, 2, 19, 20, 30)] == [1 << 10] * 2 + [1 << 11] + [
        1 << 19
    ] + [1 << 20] * 2
    seven = make_config(["experiment=dna/context_length/paper", "dna.size=7M"], subdir="7m")
    assert (seven.model.n_layer, seven.model.d_model) == (16, 256)


def test_great_apes_paper(make_config) -> None:
    cfg = make_config(["experiment=dna/great_apes/paper"])
    assert cfg.data._target_.endswith("SpeciesDataModule") and cfg.task._target_.endswith(
        "ClassificationTask"
    )
    assert list(cfg.data.species) == ["human", "chimpanzee", "gorilla", "orangutan"]
    assert (cfg.model.n_layer, cfg.model.d_model) == (12, 128) and cfg.task.pooling == "last"
    # 10 epochs x 1024 steps at batch 64; 5 epochs linear warmup then cosine to 1e-6
    assert (cfg.data.batch_size, cfg.data.train_batches_per_epoch, cfg.trainer.max_steps) == (
        64,
        1024,
        10_240,
    )
    assert cfg.scheduler.warmup_fraction == pytest.approx(0.5) and cfg.scheduler.min_lr == pytest.approx(1e-6)
    _recipe(cfg, 1e-4)  # Mamba; Hyena 4e-5
    warm = cfg.callbacks.seqlen_warmup
    assert (warm.min_seq_len, warm.epochs_per_stage, warm.tokens_per_step) == (1 << 14, 1, None)
    # 2^20: 6 warmup epochs (2^14 .. 2^19), then 4 at full length; no warmup at or below 2^14
    callback = instantiate(warm)
    callback.lengths = warmup_lengths(1 << 20, warm.min_seq_len)
    assert [callback.length_for_epoch(e) for e in range(10)] == [1 << k for k in range(14, 20)] + [
        1 << 20
    ] * 4
    assert warmup_lengths(1 << 10, warm.min_seq_len) == [1 << 10]


def test_species_mini_selects_classification_on_the_offline_set(make_config) -> None:
    cfg = make_config(["experiment=dna/species/mini"])
    assert cfg.data._target_.endswith("SpeciesDataModule") and cfg.task._target_.endswith(
        "ClassificationTask"
    )
    assert list(cfg.data.species) == ["human", "e_coli", "h_pylori", "s_aureus", "v_cholerae"]
    assert cfg.data.split_contigs is None and dict(cfg.data.split_fractions) == {
        "train": [0.0, 0.8],
        "valid": [0.8, 0.9],
        "test": [0.9, 1.0],
    }
    assert cfg.data.rc_aug and cfg.data.seq_len == 128 and cfg.trainer.max_steps == 150
    plain = make_config(["data=species"], subdir="plain")
    assert plain.task._target_.endswith("ClassificationTask") and plain.data.seq_len == 256
