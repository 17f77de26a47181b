"""The Table 1 Mamba/S6 model (``model=table1/mamba_s6``) on a Selective Copying batch: the loss and every
parameter gradient through the Triton scan match the PyTorch reference scan, with the launch that the
GPU takes at Table 1's training shapes (batch 128 x 128 channels: no time split, 4 backward lanes per
channel, several saved-state chunks), in fp32 and under bf16 autocast (the GPU trainer's precision).

The launch is forced (``split_rows=0``, ``bwd_lanes=4``, ``CHUNK=32``) so that tiny shapes take it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from mambabench.data.synthetic import selective_copying_example
from mambabench.kernels.scan_launch import scan_launch
from mambabench.tasks.lm import IGNORE_INDEX
from tests.conftest import compose_config

GPU_TRAINING_LAUNCH = {"split_rows": 0, "bwd_lanes": 4, "CHUNK": 32}


def _loss_and_grads(
    network: torch.nn.Module, batch: dict[str, torch.Tensor], backend: str, bf16: bool, device: str
) -> tuple[float, dict[str, torch.Tensor]]:
    for module in network.modules():
        if hasattr(module, "scan_backend"):
            module.scan_backend = backend
    network.zero_grad()
    with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=bf16):
        logits = network(batch["input_ids"])
    loss = F.cross_entropy(
        logits.float().flatten(0, 1), batch["targets"].flatten(), ignore_index=IGNORE_INDEX
    )
    loss.backward()
    return float(loss), {n: p.grad.clone() for n, p in network.named_parameters() if p.grad is not None}


@pytest.mark.slow
@pytest.mark.parametrize(("bf16", "tolerance"), [(False, 1e-4), (True, 5e-2)])
def test_mamba_s6_gradients_on_selective_copying_match_the_reference(
    device: str, tmp_path: Path, bf16: bool, tolerance: float
) -> None:
    cfg = compose_config(
        ["experiment=ablations/table1/short", "model=table1/mamba_s6", "model.d_model=16", "hydra.mode=RUN"],
        tmp_path,
    )
    torch.manual_seed(0)
    network = instantiate(cfg.model, vocab_size=16).to(device)
    generator = torch.Generator().manual_seed(0)
    examples = [selective_copying_example(64, 8, 16, generator) for _ in range(2)]
    batch = {k: torch.stack([e[k] for e in examples]).to(device) for k in ("input_ids", "targets")}
    ref_loss, ref_grads = _loss_and_grads(network, batch, "reference", bf16, device)
    with scan_launch(sequential=GPU_TRAINING_LAUNCH):
        loss, grads = _loss_and_grads(network, batch, "triton", bf16, device)
    assert loss == pytest.approx(ref_loss, rel=tolerance / 10)
    assert set(grads) == set(ref_grads)
    for name, ref in ref_grads.items():
        error = float((grads[name] - ref).norm() / ref.norm().clamp(min=1e-12))
        assert error < tolerance, f"{name}: relative gradient error {error:.2e}"
