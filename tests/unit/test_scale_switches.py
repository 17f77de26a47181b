"""Activation checkpointing and torch.compile change memory and speed, never the numbers."""

from __future__ import annotations

import pytest
import torch

from mambabench.utils.build import build_datamodule, build_task

TINY = ["data.seq_len=32", "data.num_tokens_memorize=4", "data.batch_size=4", "model.d_model=16"]


def _loss_and_grads(
    make_config, overrides: list[str], compile_backend: str | None = None
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss and parameter gradients of one training batch (``compile_backend``: trace the network with
    ``torch.compile(backend=...)`` first)."""
    cfg = make_config([*TINY, *overrides])
    datamodule = build_datamodule(cfg)
    torch.manual_seed(0)
    task = build_task(cfg, datamodule)
    task.configure_model()
    if compile_backend is not None:
        task.network = torch.compile(task.network, backend=compile_backend)
    task.train()
    batch = next(iter(datamodule.train_dataloader()))
    loss = task.compute(batch)["loss"][0]
    loss.backward()
    grads = {
        n.replace("_orig_mod.", ""): p.grad.clone() for n, p in task.named_parameters() if p.grad is not None
    }
    return loss.detach(), grads


@pytest.mark.parametrize("model", ["mamba", "transformerpp"])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(make_config, model) -> None:
    loss, grads = _loss_and_grads(make_config, [f"model={model}"])
    loss_ckpt, grads_ckpt = _loss_and_grads(
        make_config, [f"model={model}", "model.gradient_checkpointing=true"]
    )
    torch.testing.assert_close(loss_ckpt, loss, rtol=0, atol=0)
    assert grads.keys() == grads_ckpt.keys()
    for name in grads:
        torch.testing.assert_close(grads_ckpt[name], grads[name], rtol=1e-6, atol=1e-7, msg=name)


@pytest.mark.parametrize(
    "overrides",
    [["model=mamba"], ["model=mamba", "model.mixer.fused=true"], ["model=transformerpp"]],
    ids=["mamba", "mamba_fused", "transformerpp"],
)
def test_traced_network_gives_the_eager_gradients(make_config, overrides) -> None:
    """Dynamo + AOTAutograd (what torch.compile does before code generation) keep every gradient: the
    custom autograd Functions are traced correctly and the kernels stay opaque calls."""
    loss, grads = _loss_and_grads(make_config, overrides)
    loss_c, grads_c = _loss_and_grads(make_config, overrides, compile_backend="aot_eager")
    torch.testing.assert_close(loss_c, loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == grads_c.keys()
    for name in grads:
        assert grads[name].abs().max() > 0, name
        torch.testing.assert_close(grads_c[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.slow
def test_compiled_network_gives_the_same_loss_as_eager(make_config) -> None:
    loss, grads = _loss_and_grads(make_config, [])
    loss_c, grads_c = _loss_and_grads(make_config, ["task.compile=true"])
    torch.testing.assert_close(loss_c, loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == grads_c.keys()
    for name in grads:  # inductor fuses and reorders sums: float32 rounding, not a different gradient
        assert grads[name].abs().max() > 0, name
        torch.testing.assert_close(grads_c[name], grads[name], rtol=1e-3, atol=1e-5, msg=name)
