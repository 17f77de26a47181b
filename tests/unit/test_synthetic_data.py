"""Synthetic tasks: the layouts of the paper's Selective Copying and Induction Heads, determinism,
fresh training data every epoch, resumable loaders."""

from __future__ import annotations

import pytest
import torch

from mambabench.data import InductionHeadsDataModule, SelectiveCopyingDataModule
from mambabench.data.synthetic import induction_heads_example, selective_copying_example


def test_selective_copying_layout() -> None:
    ex = selective_copying_example(
        seq_len=64, num_tokens=8, vocab_size=16, generator=torch.Generator().manual_seed(3)
    )
    x, y = ex["input_ids"], ex["targets"]
    assert x.shape == y.shape == (64,)
    body, markers = x[:56], x[56:]
    assert torch.all(markers == 15)
    data_positions = (body != 0).nonzero().flatten()
    assert len(data_positions) == 8  # exactly the memorised tokens, the rest is noise
    tokens = body[data_positions]
    assert torch.all((tokens >= 1) & (tokens <= 14))
    assert torch.equal(y[56:], tokens)  # in order of appearance, one per marker
    assert torch.all(y[:56] == -100)


def test_paper_sizes_are_accepted() -> None:
    ex = selective_copying_example(4096, 16, 16, torch.Generator().manual_seed(0))
    assert (ex["targets"] != -100).sum() == 16 and (ex["input_ids"][:4080] != 0).sum() == 16


def test_induction_heads_layout() -> None:
    ex = induction_heads_example(seq_len=32, vocab_size=16, generator=torch.Generator().manual_seed(5))
    x, y = ex["input_ids"], ex["targets"]
    specials = (x == 15).nonzero().flatten().tolist()
    assert len(specials) == 2 and specials[-1] == 31
    assert y[-1] == x[specials[0] + 1] and torch.all(y[:-1] == -100)


def test_datamodule_determinism_and_fresh_epochs() -> None:
    a = SelectiveCopyingDataModule(
        seq_len=32, num_tokens_memorize=4, batch_size=4, train_batches_per_epoch=3, seed=7
    )
    b = SelectiveCopyingDataModule(
        seq_len=32, num_tokens_memorize=4, batch_size=4, train_batches_per_epoch=3, seed=7
    )
    first_a, first_b = next(iter(a.train_dataloader())), next(iter(b.train_dataloader()))
    assert torch.equal(first_a["input_ids"], first_b["input_ids"])
    loader = a.train_dataloader()
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader))["input_ids"], first_a["input_ids"])
    val1, val2 = next(iter(a.val_dataloader())), next(iter(a.val_dataloader()))
    assert torch.equal(val1["input_ids"], val2["input_ids"])  # fixed validation set
    other_seed = SelectiveCopyingDataModule(seq_len=32, num_tokens_memorize=4, batch_size=4, seed=8)
    assert not torch.equal(next(iter(other_seed.train_dataloader()))["input_ids"], first_a["input_ids"])


def test_resumable_loader_continues_mid_epoch() -> None:
    dm = SelectiveCopyingDataModule(
        seq_len=32, num_tokens_memorize=4, batch_size=2, train_batches_per_epoch=5
    )
    loader = dm.train_dataloader()
    iterator = iter(loader)
    seen = [next(iterator)["input_ids"] for _ in range(2)]
    state = loader.state_dict()
    rest = [b["input_ids"] for b in iterator]
    fresh = dm.train_dataloader()
    fresh.load_state_dict(state)
    resumed = [b["input_ids"] for b in fresh]
    assert len(seen) + len(resumed) == 5
    assert all(torch.equal(x, y) for x, y in zip(rest, resumed))


def test_induction_heads_eval_loaders_are_named_per_length() -> None:
    dm = InductionHeadsDataModule(
        train_seq_len=16, test_seq_lens=[8, 16, 32], num_eval_samples=4, batch_size=2
    )
    assert dm.val_names == ["L16", "L8", "L32"]
    loaders = dm.val_dataloader()
    assert [next(iter(dl))["input_ids"].shape[1] for dl in loaders] == [16, 8, 32]


def test_bad_sizes_fail_clearly() -> None:
    with pytest.raises(ValueError, match="cannot hold 16 tokens plus as many markers; use seq_len >= 32"):
        SelectiveCopyingDataModule(seq_len=20, num_tokens_memorize=16)
    with pytest.raises(ValueError, match="sequence lengths must be >= 4"):
        InductionHeadsDataModule(train_seq_len=2)
