"""Data-module base class and a resumable loader for data generated on the fly.

Every data module exposes what a network or task needs to size itself: ``vocab_size`` and
``num_classes`` (None when not a classification dataset), plus ``val_names`` / ``test_names``
naming its evaluation loaders (the first is the primary one, logged as ``val/loss`` etc.).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochSampler(Sampler[int]):
    """Yields global sample ids ``epoch * num_samples + i`` so that every epoch draws fresh samples.

    Lightning calls ``set_epoch`` each epoch; ``skip`` lets a resumed run continue mid-epoch.
    """

    def __init__(self, num_samples: int) -> None:
        self.num_samples = num_samples
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        start, self.skip = self.skip, 0
        base = self.epoch * self.num_samples
        return iter(range(base + start, base + self.num_samples))


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`EpochSampler` that Lightning checkpoints (``state_dict``) and restores,
    so a run killed mid-epoch resumes on exactly the batch it would have seen next."""

    def __init__(self, dataset: Dataset, batch_size: int, num_samples: int, **kwargs: Any) -> None:
        super().__init__(dataset, batch_size=batch_size, sampler=EpochSampler(num_samples), **kwargs)
        self._batches_done = 0

    def __iter__(self) -> Iterator[Any]:
        self._batches_done = self.sampler.skip // self.batch_size
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.sampler.epoch, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.sampler.set_epoch(state["epoch"])
        done = state["batches_done"] * self.batch_size
        self.sampler.skip = done if done < self.sampler.num_samples else 0


class SequenceDataModule(L.LightningDataModule):
    """Common loader settings and the metadata that networks and tasks read."""

    vocab_size: int | None = None
    num_classes: int | None = None

    def __init__(self, batch_size: int, num_workers: int = 0, pin_memory: bool = False,
                 eval_batch_size: int | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory

    @property
    def val_names(self) -> list[str]:
        return ["main"]

    @property
    def test_names(self) -> list[str]:
        return self.val_names

    def _loader_kwargs(self) -> dict[str, Any]:
        return {"num_workers": self.num_workers, "pin_memory": self.pin_memory,
                "persistent_workers": self.num_workers > 0}

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, **self._loader_kwargs())
