"""SaShiMi: the recurrent step reproduces the parallel forward, causality, and the paper preset's size."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from mambabench.models.mixers import Mamba
from mambabench.models.mixers.attention import MHA
from mambabench.models.mixers.s4 import S4D
from mambabench.models.mlp import MLP
from mambabench.models.sashimi import SaShiMi

MAMBA = partial(Mamba, d_state=4, scan_backend="reference")


@pytest.mark.parametrize("layers", ["mamba", "s4_mlp_attention_center"])
def test_step_matches_forward(layers: str) -> None:
    torch.manual_seed(0)
    if layers == "mamba":
        model = SaShiMi(256, 8, 1, MAMBA, MAMBA, pool=[2, 2])
    else:
        model = SaShiMi(
            256,
            8,
            1,
            partial(S4D, d_state=4),
            partial(MHA, n_heads=2),
            pool=[2, 2],
            outer_mlp=partial(MLP, expand=2),
            center_mlp=partial(MLP, expand=1),
        )
    model.eval()
    tokens = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        full = model(tokens)
        stepped = model(tokens, caches=model.allocate_cache(2))
    assert full.shape == (2, 12, 256)
    torch.testing.assert_close(stepped, full, atol=1e-4, rtol=1e-4)


def test_causal_and_any_length() -> None:
    torch.manual_seed(0)
    model = SaShiMi(16, 8, 1, MAMBA, MAMBA, pool=[4, 2]).eval()
    a = torch.randint(0, 16, (1, 13))
    b = a.clone()
    b[0, 9:] = (b[0, 9:] + 1) % 16
    with torch.no_grad():
        out_a, out_b = model(a), model(b)
    torch.testing.assert_close(out_a[:, :9], out_b[:, :9])
    assert not torch.allclose(out_a[:, 9:], out_b[:, 9:])


def test_generation_state_does_not_grow() -> None:
    model = SaShiMi(16, 8, 1, MAMBA, MAMBA, pool=[2, 2]).eval()
    caches = model.allocate_cache(1)

    def state_bytes(obj) -> int:
        if torch.is_tensor(obj):
            return obj.numel() * obj.element_size()
        if isinstance(obj, (list, tuple)):
            return sum(state_bytes(o) for o in obj)
        return sum(state_bytes(v) for v in vars(obj).values()) if hasattr(obj, "__dict__") else 0

    before = state_bytes(caches)
    with torch.no_grad():
        for t in range(20):
            model.step(torch.tensor([t % 16]), caches)
    assert state_bytes(caches) == before


def test_paper_presets_sizes(make_config, tmp_path: Path) -> None:
    cfg = make_config(["experiment=audio/sc09/paper", "logger=[]"])
    model = instantiate(cfg.model, vocab_size=256, _convert_="all")
    params = sum(p.numel() for p in model.parameters())
    assert 5.8e6 < params < 6.5e6  # Table 4: Mamba 6.1M (8 layers per level, D=64, pool 4 x 4)
    assert (cfg.optimizer.lr, cfg.trainer.gradient_clip_val, cfg.data.batch_size) == (2e-3, 0.1, 16)
    assert len(model.body.down) == 8 and model.pool == [4, 4]
    cfg = make_config(["experiment=audio/youtubemix/paper", "logger=[]", "data.seq_len=120832"])
    assert (cfg.data.seq_len, cfg.data.batch_size) == (120832, 8)  # Table 14
    batches = [
        OmegaConf.create({"n": n, "b": "${mb.pow2_batch:1048576,${n}}"}).b for n in (958464, 61440, 8192)
    ]
    assert batches == [1, 16, 128]
    assert cfg.model.pool == [16, 16] and cfg.model.outer_mixer.A_init == "s4d_lin"
