"""``debug=overfit`` (Lightning's ``overfit_batches``) runs on the data modules that generate their
training data on the fly, whose training loader Lightning rebuilds with its own sampler."""

from __future__ import annotations

import warnings

import pytest
import torch
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import SequentialSampler

from mambabench.data.base import EpochSampler, ResumableLoader
from mambabench.utils.run import train


class _Indices(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 20

    def __getitem__(self, index: int) -> int:
        return index


def test_lightning_can_rebuild_the_loader_with_its_own_sampler() -> None:
    loader = ResumableLoader(_Indices(), batch_size=4, num_samples=20)
    assert isinstance(loader.sampler, EpochSampler)
    rebuilt = _update_dataloader(loader, sampler=SequentialSampler(loader.dataset))
    assert isinstance(rebuilt, ResumableLoader) and not rebuilt.resumable
    first = [b.tolist() for b in rebuilt][:2]
    assert first == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert [b.tolist() for b in rebuilt][:2] == first  # the same batches every epoch
    rebuilt.load_state_dict({"epoch": 3, "batches_done": 2})  # nothing to restore: ignored
    assert rebuilt.state_dict() == {"epoch": 0, "batches_done": 5}


@pytest.mark.parametrize(
    "overrides",
    [
        ["data=selective_copying", "data.seq_len=32", "data.num_tokens_memorize=4", "data.num_val_samples=8"],
        [
            "data=induction_heads",
            "data.train_seq_len=32",
            "data.test_seq_lens=[32]",
            "data.num_eval_samples=8",
        ],
        ["experiment=icl/linear/mini", "data.num_eval_samples=8"],
    ],
    ids=["selective_copying", "induction_heads", "icl_linear"],
)
def test_debug_overfit_trains_on_generated_data(make_config, overrides) -> None:
    cfg = make_config(
        [
            *overrides,
            "debug=overfit",
            "trainer.max_steps=4",
            "trainer.val_check_interval=4",
            "data.batch_size=4",
            "model.d_model=16",
            "model.n_layer=1",
            "logger=csv",
        ]
    )
    assert cfg.test is False and cfg.trainer.log_every_n_steps == 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["val/loss"]))
    assert not [k for k in metrics if k.startswith("test/")], "debug=overfit skips the held-out test"
    said = [str(w.message) for w in caught]
    assert not [m for m in said if "shuffling" in m or "logging interval" in m], said
