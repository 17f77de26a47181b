"""The fused decode kernels (conv update, one-launch Mamba SSM step) against the unfused PyTorch step."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mambabench.kernels import causal_conv1d_update, selective_state_update_fused
from mambabench.kernels.causal_conv1d import causal_conv1d_update_triton
from mambabench.kernels.state_update import selective_state_update_triton
from mambabench.models.generation import generate
from mambabench.models.lm import LMHeadModel
from mambabench.models.mixers import Mamba
from mambabench.models.mixers import mamba as mamba_module
from mambabench.ops import causal_conv1d_update_ref, selective_state_update_fused_ref


@pytest.mark.parametrize("width,bias,act", [(4, True, "silu"), (3, False, None)])
def test_conv_update_matches_reference(device: str, width: int, bias: bool, act: str | None) -> None:
    g = torch.Generator().manual_seed(width)
    batch, dim = 3, 150  # dim not a multiple of the kernel's block
    xz = torch.randn(batch, 2 * dim, generator=g).to(device)
    x = xz[:, :dim]  # a strided view, as in the Mamba step
    state = torch.randn(batch, dim, width, generator=g).to(device)
    weight = torch.randn(dim, width, generator=g).to(device)
    b = torch.randn(dim, generator=g).to(device) if bias else None
    s1, s2 = state.clone(), state.clone()
    out = causal_conv1d_update_triton(x, s1, weight, b, act)
    ref = causal_conv1d_update_ref(x, s2, weight, b, act)
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    assert torch.equal(s1[..., -1], x) and torch.equal(s1[..., :-1], state[..., 1:])


def _mamba_step_inputs(g: torch.Generator, batch: int, dim: int, dstate: int, rank: int, device: str):
    xz = torch.randn(batch, 2 * dim, generator=g).to(device)
    x_db = torch.randn(batch, rank + 2 * dstate, generator=g).to(device)
    dt_low, B, C = torch.split(x_db, [rank, dstate, dstate], dim=-1)  # column views, as in the step
    weight = (torch.randn(dim, rank, generator=g) * rank**-0.5).to(device)
    bias = (torch.rand(dim, generator=g) - 4.0).to(device)
    A_log = torch.log(torch.arange(1, dstate + 1, dtype=torch.float32)).repeat(dim, 1).to(device)
    D = torch.randn(dim, generator=g).to(device)
    state = torch.randn(batch, dim, dstate, generator=g).to(device)
    return state, xz[:, :dim], dt_low, weight, bias, A_log, B, C, D, xz[:, dim:]


@pytest.mark.parametrize("dstate,dt_in_kernel", [(16, True), (5, True), (16, False)])
def test_fused_mamba_step_matches_unfused(device: str, dstate: int, dt_in_kernel: bool) -> None:
    g = torch.Generator().manual_seed(dstate)
    state, x, dt_low, weight, bias, A_log, B, C, D, z = _mamba_step_inputs(g, 2, 40, dstate, 6, device)
    dt, w = (dt_low, weight) if dt_in_kernel else (F.linear(dt_low, weight), None)
    s1, s2 = state.clone(), state.clone()
    out = selective_state_update_fused(s1, x, dt, w, bias, A_log, B, C, D, z, backend="triton")
    ref = selective_state_update_fused_ref(s2, x, dt_low, weight, bias, A_log, B, C, D, z)
    torch.testing.assert_close(s1, s2, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


def test_low_precision_state_output_reads_the_stored_state(device: str) -> None:
    """A bf16 state: the output is computed from the rounded state, as the reference of the official
    test file does (out = sum_n round(h) * C), not from fp32 registers."""
    g = torch.Generator().manual_seed(3)
    batch, dim, dstate = 2, 32, 64
    state = torch.randn(batch, dim, dstate, generator=g).to(torch.bfloat16).to(device)
    x, dt, z = (torch.randn(batch, dim, generator=g).to(torch.bfloat16).to(device) for _ in range(3))
    A = (-torch.rand(dim, dstate, generator=g) - 1.0).to(device)
    B, C = (torch.randn(batch, dstate, generator=g).to(device) for _ in range(2))
    D, bias = torch.randn(dim, generator=g).to(device), (torch.rand(dim, generator=g) - 4.0).to(device)
    new = state.clone()
    out = selective_state_update_triton(new, x, dt, A, B, C, D, z, bias, True)
    delta = F.softplus(dt.float() + bias)
    h = state.float() * torch.exp(delta[..., None] * A) + (delta * x.float())[..., None] * B[:, None]
    torch.testing.assert_close(new.float(), h, rtol=8e-3, atol=1e-2)  # within one bf16 step
    expected = ((new.float() * C[:, None]).sum(-1) + x.float() * D) * F.silu(z.float())
    torch.testing.assert_close(out.float(), expected, rtol=8e-3, atol=1e-5)  # the bf16 output's own rounding


def _tiny_mamba(backend: str) -> LMHeadModel:
    torch.manual_seed(0)
    mixer = lambda d_model, layer_idx: Mamba(d_model, d_state=4, scan_backend=backend, layer_idx=layer_idx)  # noqa: E731
    return LMHeadModel(vocab_size=11, d_model=8, n_layer=2, mixer=mixer).eval()


@pytest.mark.parametrize("dt_in_kernel", [True, False])
def test_mamba_model_step_with_kernels_matches_reference_step(monkeypatch, dt_in_kernel: bool) -> None:
    """The whole model's step through the Triton decode kernels equals the PyTorch step, and greedy
    generation through them equals the argmax of the parallel forward."""
    monkeypatch.setattr(mamba_module, "DT_PROJ_IN_KERNEL_MAX_BATCH", 16 if dt_in_kernel else 0)
    triton_model, ref_model = _tiny_mamba("triton"), _tiny_mamba("reference")
    ids = torch.randint(0, 11, (2, 6), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        c1, c2 = triton_model.allocate_cache(2), ref_model.allocate_cache(2)
        triton_model(ids[:, :3], caches=c1)
        ref_model(ids[:, :3], caches=c2)
        for t in range(3, 6):
            torch.testing.assert_close(
                triton_model.step(ids[:, t], c1), ref_model.step(ids[:, t], c2), rtol=1e-5, atol=1e-5
            )
        out = generate(triton_model, ids[:, :2], max_new_tokens=3, temperature=0)
        for t in range(2, 5):
            assert torch.equal(out[:, t], ref_model(out[:, :t])[:, -1].argmax(-1))


def test_conv_update_dispatch_takes_the_kernel_under_triton_backend(device: str) -> None:
    x = torch.randn(1, 4).to(device)
    state = torch.zeros(1, 4, 4).to(device)
    weight = torch.ones(4, 4).to(device)
    out = causal_conv1d_update(x, state, weight, None, None, backend="triton")
    torch.testing.assert_close(out, x)
