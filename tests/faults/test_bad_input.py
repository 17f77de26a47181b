"""Every bad input a user can give gets a message that names the problem and the fix."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from mambabench.data.genome import GenomeDataError
from mambabench.utils.build import build_datamodule, build_network
from mambabench.utils.checkpoint import CheckpointError
from mambabench.utils.errors import ConfigError, DataNotFoundError
from mambabench.utils.run import evaluate, train
from tests.conftest import compose_config
from tests.faults.helpers import TINY

QUICK = [*TINY, "test=false", "callbacks.progress_bar=null"]


def _hg38(make_config, tmp_path: Path, fasta: Path):
    cfg = make_config(["data=hg38", f"data.fasta={fasta}", "data.seq_len=64"])
    return build_datamodule(cfg)


# ------------------------------------------------------------------------------------------- data files
def test_missing_data_file_names_path_and_prepare_command(make_config, tmp_path) -> None:
    with pytest.raises(
        DataNotFoundError,
        match="data file '.*nowhere.fa' does not exist; prepare it with: python scripts/prepare_data.py hg38",
    ):
        _hg38(make_config, tmp_path, tmp_path / "nowhere.fa").setup("fit")


def test_empty_data_file(make_config, tmp_path) -> None:
    empty = tmp_path / "empty.fa"
    empty.write_text("")
    with pytest.raises(GenomeDataError, match="FASTA '.*empty.fa' is empty; re-create it"):
        _hg38(make_config, tmp_path, empty).setup("fit")


def test_empty_data_path_or_a_directory(make_config, tmp_path) -> None:
    with pytest.raises(
        GenomeDataError, match="no FASTA file given \\(the path is empty\\); prepare one with: python"
    ):
        _hg38(make_config, tmp_path, "").setup("fit")
    with pytest.raises(GenomeDataError, match="FASTA path '.*' is a directory; give the file itself"):
        _hg38(make_config, tmp_path, tmp_path).setup("fit")


def test_wrong_file_format_gzip(make_config, tmp_path) -> None:
    packed = tmp_path / "genome.fa.gz"
    packed.write_bytes(gzip.compress(b">chr1\nACGT\n"))
    with pytest.raises(GenomeDataError, match="is gzip-compressed.*gunzip -k"):
        _hg38(make_config, tmp_path, packed).setup("fit")


def test_wrong_file_format_not_fasta(make_config, tmp_path) -> None:
    text = tmp_path / "notes.fa"
    text.write_text("this is not a genome\n")
    with pytest.raises(GenomeDataError, match="cannot index FASTA '.*notes.fa'.*start with '>'"):
        _hg38(make_config, tmp_path, text).setup("fit")


# ------------------------------------------------------------------------------- tokens and lengths
def test_tokens_outside_the_vocabulary(make_config) -> None:
    network = build_network(make_config([*TINY, "model.vocab_size=8"]), build_datamodule(make_config(TINY)))
    with pytest.raises(ValueError, match="token id 12 is outside this model's vocabulary 0..7"):
        network(torch.tensor([[1, 12, 3]]))
    with pytest.raises(ValueError, match="token id -1 is outside"):
        network(torch.tensor([[1, -1, 3]]))


def test_sequence_longer_than_the_model_supports(make_config) -> None:
    with pytest.raises(ConfigError, match="data sequence length 8192 exceeds model.max_seq_len=4096; raise"):
        train(make_config(["model=transformer", "data.seq_len=8192", "debug=fdr"]))
    network = build_network(
        make_config([*TINY, "model=transformer", "model.max_seq_len=16"]), build_datamodule(make_config(TINY))
    )
    with pytest.raises(
        ValueError, match="sequence of 20 tokens exceeds the learned positions \\(model.max_seq_len=16\\)"
    ):
        network(torch.zeros(1, 20, dtype=torch.long))


# ---------------------------------------------------------------------------------------------- sizes
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.d_model=0", "model.d_model=0 must be a positive integer"),
        ("model.n_layer=-2", "model.n_layer=-2 must be a positive integer"),
        ("data.batch_size=0", "batch_size must be >= 1, got 0"),
        ("data.seq_len=-4", "seq_len=-4 cannot hold 4 tokens plus as many markers; use seq_len >= 8"),
    ],
)
def test_zero_or_negative_sizes(make_config, override, message) -> None:
    cfg = make_config([*TINY, override])
    with pytest.raises((ValueError, ConfigError), match=message):
        build_network(cfg, build_datamodule(cfg))


def test_d_state_above_the_kernel_limit(make_config) -> None:
    with pytest.raises(
        ConfigError, match="model.mixer.d_state=300 is not supported: the selective scan takes 1..256"
    ):
        train(make_config([*TINY, "model.mixer.d_state=300"]))
    from mambabench.models.mixers.mamba import Mamba

    with pytest.raises(
        ValueError, match="d_state=512 is out of range: the scan supports 1 <= d_state <= 256"
    ):
        Mamba(d_model=16, d_state=512)


def test_typo_in_an_override_key(tmp_path) -> None:
    with pytest.raises(ConfigCompositionException, match="Could not override 'model.d_modle'") as info:
        compose_config(["model.d_modle=32"], tmp_path)
    assert "Key 'd_modle' is not in struct" in str(info.value.__cause__)


# ----------------------------------------------------------------------------------------- checkpoints
@pytest.fixture
def tiny_run(make_config) -> Path:
    cfg = make_config([*QUICK, "trainer.max_steps=2"], subdir="source")
    train(cfg)
    return Path(cfg.paths.output_dir)


def test_checkpoint_of_a_different_model_lists_keys_and_shapes(make_config, tiny_run) -> None:
    cfg = make_config(
        [
            *QUICK,
            "model.d_model=24",
            "trainer.max_steps=3",
            f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}",
        ]
    )
    with pytest.raises(CheckpointError, match="saved by a model with a different config") as info:
        train(cfg)
    assert "network.backbone.embedding.weight: checkpoint (16, 16) vs model (16, 24)" in str(info.value)
    deeper = make_config(
        [
            *QUICK,
            "model.n_layer=3",
            "trainer.max_steps=3",
            f"ckpt_path={tiny_run / 'checkpoints' / 'last.ckpt'}",
        ],
        subdir="deeper",
    )
    with pytest.raises(CheckpointError, match="only in the model: network.backbone.layers.2"):
        train(deeper)


def test_run_dir_holding_a_different_config(make_config, tiny_run) -> None:
    cfg = make_config([*QUICK, "model.d_model=24", f"run_dir={tiny_run}"], subdir="other")
    with pytest.raises(ConfigError, match="holds a run with a different config.*\n  model.d_model: 16 -> 24"):
        train(cfg)
    with pytest.raises(ConfigError, match="already holds a run; continue it with resume=auto"):
        train(make_config([*QUICK, f"run_dir={tiny_run}", "resume=never"], subdir="never"))


def test_corrupt_or_empty_checkpoint_is_named(make_config, tiny_run, tmp_path) -> None:
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes((tiny_run / "checkpoints" / "last.ckpt").read_bytes()[:1000])
    with pytest.raises(
        CheckpointError, match="checkpoint '.*broken.ckpt' is truncated or corrupt.*delete it"
    ):
        train(make_config([*QUICK, "trainer.max_steps=3", f"ckpt_path={broken}"]))
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="'.*empty.ckpt' is empty \\(0 bytes\\)"):
        train(make_config([*QUICK, "trainer.max_steps=3", f"ckpt_path={empty}"], subdir="e"))


def test_eval_and_generate_accept_a_run_directory(tiny_run, tmp_path) -> None:
    from mambabench.utils.sampling import sample_from_checkpoint

    metrics = evaluate(compose_config([f"ckpt_path={tiny_run}", "logger=[]"], tmp_path / "eval", "eval.yaml"))
    assert "test/loss" in metrics
    out = sample_from_checkpoint(
        compose_config(
            [f"ckpt_path={tiny_run}", "max_new_tokens=2", "num_samples=1", "prompt_len=4"],
            tmp_path / "gen",
            "generate.yaml",
        )
    )
    assert out.shape == (1, 6)
    bare = tmp_path / "bare"
    bare.mkdir()
    with pytest.raises(CheckpointError, match="'.*bare' is a directory without checkpoints; pass ckpt_path="):
        evaluate(compose_config([f"ckpt_path={bare}", "logger=[]"], tmp_path / "eval2", "eval.yaml"))
