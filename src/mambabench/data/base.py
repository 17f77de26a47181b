"""Data-module base class and a resumable loader for data generated on the fly.

Every data module exposes what a network or task needs to size itself: ``vocab_size`` and
``num_classes`` (None when not a classification dataset), plus ``val_names`` / ``test_names``
naming its evaluation loaders (the first is the primary one, logged as ``val/loss`` etc.).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning as L
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from mambabench.utils.errors import ConfigError


def _rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0, 1 outside ``torch.distributed``)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class EpochSampler(DistributedSampler):
    """Yields global sample ids ``epoch * num_samples + i`` so that every epoch draws fresh samples,
    each process (rank) taking its own share: rank ``r`` of ``w`` takes ``i = r, r + w, r + 2w, ...``.

    The share is interleaved so that the samples of one optimizer step do not depend on how the global
    batch is split: one process with micro-batch ``b`` and ``w`` accumulation steps sees ids
    ``0 .. w*b-1`` in its first step, and ``w`` processes with micro-batch ``b`` see the same ids between
    them. A run therefore trains on the same data whatever the device count, given a fixed global batch.
    Every rank gets ``num_samples // w`` ids (the remainder is dropped, as with ``drop_last``).

    It subclasses ``DistributedSampler`` only to tell Lightning that it already shards by rank (Lightning
    then leaves the loader alone); rank and world size are read from ``torch.distributed`` when the
    loader is built, which Lightning does after the process group exists. Any data module gets
    rank-distinct, resumable training data by returning a :class:`ResumableLoader` from
    ``train_dataloader`` over a dataset whose item ``k`` is a function of ``k`` alone.

    Lightning calls ``set_epoch`` each epoch; ``skip`` (in this rank's ids) lets a resumed run continue
    mid-epoch.
    """

    def __init__(self, num_samples: int, rank: int | None = None, world_size: int | None = None) -> None:
        found_rank, found_world = _rank_and_world()
        self.rank = found_rank if rank is None else rank
        self.world_size = found_world if world_size is None else world_size
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is outside 0..{self.world_size - 1}")
        if num_samples < self.world_size:
            raise ConfigError(
                f"{num_samples} training samples per epoch cannot be shared by {self.world_size} processes; "
                "raise the samples per epoch (e.g. data.train_batches_per_epoch) or use fewer devices"
            )
        self.num_samples = num_samples
        self.epoch = 0
        self.skip = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples // self.world_size

    def __iter__(self) -> Iterator[int]:
        start, self.skip = self.skip, 0
        base = self.epoch * self.num_samples
        local = range(self.rank, len(self) * self.world_size, self.world_size)
        return iter(base + i for i in local[start:])


class ResumableLoader(DataLoader):
    """A DataLoader over an :class:`EpochSampler` that Lightning checkpoints (``state_dict``) and restores,
    so a run killed mid-epoch resumes on exactly the batch it would have seen next.

    ``sampler`` is for Lightning only: it rebuilds loaders with its own sampler where it must (e.g.
    ``trainer.overfit_batches`` takes the first batches in order with a ``SequentialSampler``); such a
    loader iterates that sampler and has no position to save.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        num_samples: int,
        sampler: Sampler | None = None,
        **kwargs: Any,
    ) -> None:
        sampler = EpochSampler(num_samples) if sampler is None else sampler
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self.num_samples = num_samples  # Lightning re-reads the constructor's arguments to rebuild a loader
        self._batches_done = 0

    @property
    def resumable(self) -> bool:
        """Whether the position in the epoch can be saved and restored (an :class:`EpochSampler`)."""
        return isinstance(self.sampler, EpochSampler)

    def __iter__(self) -> Iterator[Any]:
        skip = self.sampler.skip if self.resumable else 0
        self._batches_done = skip // self.batch_size if self.batch_size else 0
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        epoch = self.sampler.epoch if self.resumable else 0
        return {"epoch": epoch, "batches_done": self._batches_done}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if not self.resumable:
            return
        self.sampler.set_epoch(state["epoch"])
        done = state["batches_done"] * self.batch_size
        self.sampler.skip = done if done < len(self.sampler) else 0


class SequenceDataModule(L.LightningDataModule):
    """Common loader settings and the metadata that networks and tasks read."""

    vocab_size: int | None = None
    num_classes: int | None = None

    def __init__(
        self,
        batch_size: int,
        num_workers: int = 0,
        pin_memory: bool = False,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
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
        return {
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory,
            "persistent_workers": self.num_workers > 0,
        }

    def _eval_loader(self, dataset: Dataset) -> DataLoader:
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, **self._loader_kwargs())
