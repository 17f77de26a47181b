"""Synthetic tasks of the Mamba paper (§4.1), generated on the fly and deterministic given a seed.

Training samples are fresh every step (sample id = epoch * samples_per_epoch + index, each with its
own seeded generator); validation and test sets are fixed.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mambabench.data.base import ResumableLoader, SequenceDataModule
from mambabench.tasks.lm import IGNORE_INDEX
from mambabench.utils.errors import ConfigError

_SPLIT_SALT = {"train": 0, "val": 1, "test": 2}


def _generator(seed: int, split: str, index: int, extra: int = 0) -> torch.Generator:
    key = hash((seed, _SPLIT_SALT[split], index, extra)) & 0x7FFF_FFFF_FFFF_FFFF
    return torch.Generator().manual_seed(key)


def selective_copying_example(
    seq_len: int, num_tokens: int, vocab_size: int, generator: torch.Generator
) -> dict[str, Tensor]:
    """One Selective Copying sequence (paper Fig. 2; s4's ``variable`` copying layout).

    Token 0 is noise, ``vocab_size - 1`` the marker, data tokens are 1..vocab_size-2. The first
    ``seq_len - num_tokens`` positions hold ``num_tokens`` data tokens at random positions (in order)
    among noise; then ``num_tokens`` markers follow. At the i-th marker the model must output the
    i-th data token; all other targets are ignored.

    Returns input_ids and targets, both (seq_len,) int64.
    """
    body = seq_len - num_tokens
    marker = vocab_size - 1
    tokens = torch.randint(1, vocab_size - 1, (num_tokens,), generator=generator)
    positions = torch.randperm(body, generator=generator)[:num_tokens].sort().values
    input_ids = torch.zeros(seq_len, dtype=torch.long)
    input_ids[positions] = tokens
    input_ids[body:] = marker
    targets = torch.full((seq_len,), IGNORE_INDEX, dtype=torch.long)
    targets[body:] = tokens
    return {"input_ids": input_ids, "targets": targets}


def induction_heads_example(seq_len: int, vocab_size: int, generator: torch.Generator) -> dict[str, Tensor]:
    """One Induction Heads sequence (safari's format, as public reproductions of the paper use).

    Random tokens from 0..vocab_size-2; the special token ``vocab_size - 1`` appears once at a random
    position followed by the token to recall, and again as the last input. The only target is the
    last position: the token that followed the first special token.

    Returns input_ids and targets, both (seq_len,) int64.
    """
    special = vocab_size - 1
    input_ids = torch.randint(0, vocab_size - 1, (seq_len,), generator=generator)
    position = int(torch.randint(0, seq_len - 2, (1,), generator=generator))
    input_ids[position] = special
    input_ids[-1] = special
    targets = torch.full((seq_len,), IGNORE_INDEX, dtype=torch.long)
    targets[-1] = input_ids[position + 1]
    return {"input_ids": input_ids, "targets": targets}


class _GeneratedDataset(Dataset):
    """Dataset whose item ``i`` is ``make(generator(seed, split, i))``; any int index is valid."""

    def __init__(self, make, num_samples: int, seed: int, split: str, extra: int = 0) -> None:
        self.make, self.num_samples, self.seed, self.split, self.extra = make, num_samples, seed, split, extra

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return self.make(_generator(self.seed, self.split, int(index), self.extra))


def task_symbols(ids: Tensor | list[int], names: dict[int, str]) -> str:
    """ids (L,) -> the task's symbols separated by spaces: named tokens by name, others as numbers."""
    values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
    return " ".join(names.get(int(i), str(int(i))) for i in values)


class SelectiveCopyingDataModule(SequenceDataModule):
    """Selective Copying (paper §4.1.1, Table 1).

    Paper values: vocab_size 16 (noise and marker included), num_tokens_memorize 16, seq_len 4096,
    batch 64, 400K steps. ``seq_len`` is the whole input, markers included.

    Args:
        train_batches_per_epoch: optimizer-free batches that make one "epoch" of fresh data.
        num_val_samples, num_test_samples: sizes of the fixed evaluation sets.
    """

    def __init__(
        self,
        vocab_size: int = 16,
        seq_len: int = 4096,
        num_tokens_memorize: int = 16,
        batch_size: int = 64,
        train_batches_per_epoch: int = 1000,
        num_val_samples: int = 512,
        num_test_samples: int = 512,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, eval_batch_size)
        if vocab_size < 3:
            raise ConfigError(
                f"selective copying needs data.vocab_size >= 3 (noise, marker, data), got {vocab_size}"
            )
        if num_tokens_memorize < 1 or seq_len < 2 * num_tokens_memorize:
            raise ConfigError(
                f"data.seq_len={seq_len} cannot hold {num_tokens_memorize} tokens plus as many markers; "
                f"use seq_len >= {2 * max(1, num_tokens_memorize)} or a smaller data.num_tokens_memorize"
            )
        self.vocab_size = vocab_size
        self.seq_len = seq_len
        self.num_tokens = num_tokens_memorize
        self.train_samples = train_batches_per_epoch * batch_size
        self.num_val_samples, self.num_test_samples = num_val_samples, num_test_samples
        self.seed = seed

    def _make(self, generator: torch.Generator) -> dict[str, Tensor]:
        return selective_copying_example(self.seq_len, self.num_tokens, self.vocab_size, generator)

    def decode(self, ids: Tensor | list[int]) -> str:
        """ids (L,) -> symbols: noise ``.``, marker ``|``, data tokens as their numbers."""
        return task_symbols(ids, {0: ".", self.vocab_size - 1: "|"})

    def train_dataloader(self) -> DataLoader:
        dataset = _GeneratedDataset(self._make, self.train_samples, self.seed, "train")
        return ResumableLoader(dataset, self.batch_size, self.train_samples, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(_GeneratedDataset(self._make, self.num_val_samples, self.seed, "val"))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(_GeneratedDataset(self._make, self.num_test_samples, self.seed, "test"))


class InductionHeadsDataModule(SequenceDataModule):
    """Induction Heads (paper §4.1.2, Table 11): train at one length, evaluate at many.

    Paper values: vocab_size 16, train_seq_len 256, test lengths 2^6..2^20, batch 8, 8192 steps per
    epoch. One evaluation loader per test length, named ``L<length>``; the training length comes first.
    """

    def __init__(
        self,
        vocab_size: int = 16,
        train_seq_len: int = 256,
        test_seq_lens: list[int] | tuple[int, ...] = (64, 128, 256, 512, 1024),
        batch_size: int = 8,
        train_batches_per_epoch: int = 8192,
        num_eval_samples: int = 256,
        eval_batch_size: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, eval_batch_size)
        lengths = [int(n) for n in test_seq_lens]
        if vocab_size < 3:
            raise ConfigError(f"induction heads needs data.vocab_size >= 3, got {vocab_size}")
        if min([train_seq_len, *lengths]) < 4:
            raise ConfigError(
                f"sequence lengths must be >= 4, got data.train_seq_len={train_seq_len}, data.test_seq_lens={lengths}"
            )
        self.vocab_size = vocab_size
        self.train_seq_len = train_seq_len
        self.eval_lengths = [train_seq_len] + [n for n in lengths if n != train_seq_len]
        self.train_samples = train_batches_per_epoch * batch_size
        self.num_eval_samples = num_eval_samples
        self.seed = seed

    @property
    def val_names(self) -> list[str]:
        return [f"L{n}" for n in self.eval_lengths]

    def _maker(self, seq_len: int) -> partial:
        return partial(induction_heads_example, seq_len, self.vocab_size)

    def decode(self, ids: Tensor | list[int]) -> str:
        """ids (L,) -> symbols: the special (recall) token ``*``, the others as their numbers."""
        return task_symbols(ids, {self.vocab_size - 1: "*"})

    def train_dataloader(self) -> DataLoader:
        dataset = _GeneratedDataset(self._maker(self.train_seq_len), self.train_samples, self.seed, "train")
        return ResumableLoader(dataset, self.batch_size, self.train_samples, **self._loader_kwargs())

    def _eval_loaders(self, split: str) -> list[DataLoader]:
        return [
            self._eval_loader(
                _GeneratedDataset(self._maker(n), self.num_eval_samples, self.seed, split, extra=n)
            )
            for n in self.eval_lengths
        ]

    def val_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("val")

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders("test")
