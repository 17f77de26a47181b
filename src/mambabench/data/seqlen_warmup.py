"""Sequence-length warmup (mamba-paper.md §4.3-4.4; HyenaDNA's ``seqlen_warmup_reload``), for Lightning 2.

Training starts at ``min_seq_len`` and doubles the window length every ``epochs_per_stage`` epochs
until it reaches the data module's ``seq_len``, where it stays. With ``tokens_per_step`` set, every
optimizer step sees the same number of tokens at every length (the paper's context-length scaling:
batch halves as length doubles); the per-device micro-batch holds at most ``max_tokens_per_batch``
tokens and gradient accumulation makes up the rest. Without it the batch size stays constant
(the paper's great-apes fine-tuning, batch 64 at every length).

Mechanics: the callback hands the data module a ``stage_for_epoch(epoch) -> (seq_len, batch_size)``
function, makes Lightning rebuild the train loader every epoch and sets the trainer's gradient
accumulation at the start of each epoch. Validation and test always use the final length.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from mambabench.utils.errors import ConfigError


def warmup_lengths(target: int, min_seq_len: int) -> list[int]:
    """Stage lengths ``min_seq_len, 2*min_seq_len, ...`` below ``target``, then ``target``."""
    lengths, length = [], int(min_seq_len)
    while length < target:
        lengths.append(length)
        length *= 2
    return [*lengths, int(target)]


class SequenceLengthWarmup(L.Callback):
    """Args:
    min_seq_len: first stage's window length (paper: 2^10 for HG38, 2^14 for great apes).
    epochs_per_stage: epochs at each length before the final one (paper: 2 for HG38, 1 for great apes).
    tokens_per_step: tokens per optimizer step at every stage, over all devices (paper: 2^24); None
        keeps ``data.batch_size`` sequences per device at every stage.
    max_tokens_per_batch: tokens in one per-device forward pass (memory); None means
        ``data.batch_size * data.seq_len`` (the batch size is the one at the final length).
    """

    def __init__(
        self,
        min_seq_len: int = 1024,
        epochs_per_stage: int = 2,
        tokens_per_step: int | None = None,
        max_tokens_per_batch: int | None = None,
    ) -> None:
        if min_seq_len < 2 or epochs_per_stage < 1:
            raise ConfigError(
                f"sequence-length warmup needs min_seq_len >= 2 and epochs_per_stage >= 1, got "
                f"{min_seq_len}, {epochs_per_stage}"
            )
        self.min_seq_len, self.epochs_per_stage = int(min_seq_len), int(epochs_per_stage)
        self.tokens_per_step, self.max_tokens_per_batch = tokens_per_step, max_tokens_per_batch
        self.lengths: list[int] = []
        self.world_size = 1
        self.base_batch_size = 1
        self._announced = -1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        datamodule = trainer.datamodule
        if datamodule is None or not hasattr(datamodule, "stage_for_epoch"):
            raise ConfigError(
                f"callbacks.seqlen_warmup needs a data module with sequence-length stages "
                f"(data=hg38 or data=great_apes), got {type(datamodule).__name__}"
            )
        if self.tokens_per_step and trainer.accumulate_grad_batches != 1:
            raise ConfigError(
                "callbacks.seqlen_warmup.tokens_per_step sets gradient accumulation itself; drop "
                "global_batch_size / trainer.accumulate_grad_batches"
            )
        self.lengths = warmup_lengths(datamodule.seq_len, self.min_seq_len)
        self.world_size = trainer.world_size
        self.base_batch_size = datamodule.batch_size
        self.max_tokens = self.max_tokens_per_batch or datamodule.batch_size * datamodule.seq_len
        for length in self.lengths:
            self.plan(length)  # fail now, not at the stage that does not divide
        datamodule.stage_for_epoch = self.stage_for_epoch
        trainer.reload_dataloaders_every_n_epochs = 1

    def length_for_epoch(self, epoch: int) -> int:
        return self.lengths[min(epoch // self.epochs_per_stage, len(self.lengths) - 1)]

    def plan(self, seq_len: int) -> tuple[int, int]:
        """(per-device batch size, gradient accumulation) for windows of ``seq_len``."""
        if not self.tokens_per_step:
            return self.base_batch_size, 1
        per_step, rest = divmod(int(self.tokens_per_step), seq_len * self.world_size)
        if per_step < 1 or rest:
            raise ConfigError(
                f"tokens_per_step={self.tokens_per_step} is not a multiple of seq_len {seq_len} x "
                f"{self.world_size} device(s); use powers of two"
            )
        micro = max(1, min(per_step, self.max_tokens // seq_len))
        while per_step % micro:
            micro -= 1
        return micro, per_step // micro

    def stage_for_epoch(self, epoch: int) -> tuple[int, int]:
        length = self.length_for_epoch(epoch)
        return length, self.plan(length)[0]

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        length = self.length_for_epoch(trainer.current_epoch)
        if self.tokens_per_step:
            trainer.accumulate_grad_batches = self.plan(length)[1]
        if length != self._announced:
            rank_zero_info(
                f"sequence-length warmup: epoch {trainer.current_epoch} trains on windows of {length}"
            )
            self._announced = length
