"""Decode step (selective_state_update) and causal conv1d kernels vs the PyTorch references."""

from __future__ import annotations

import pytest
import torch

from mambabench.kernels import causal_conv1d_fn, selective_state_update
from mambabench.kernels.causal_conv1d import causal_conv1d_triton
from mambabench.kernels.selective_scan import selective_scan_triton
from mambabench.kernels.state_update import selective_state_update_triton
from mambabench.ops import causal_conv1d_ref, selective_state_update_ref


@pytest.mark.parametrize("groups", [0, 1, 2])
@pytest.mark.parametrize("dstate", [1, 16])
def test_state_update_matches_reference(device: str, groups: int, dstate: int) -> None:
    g = torch.Generator().manual_seed(groups + 10 * dstate)
    batch, dim = 2, 6
    state = torch.randn(batch, dim, dstate, generator=g).to(device)
    x, dt, z = (torch.randn(batch, dim, generator=g).to(device) for _ in range(3))
    A = (-0.5 - torch.rand(dim, dstate, generator=g)).to(device)
    shape = (batch, dstate) if groups == 0 else (batch, groups, dstate)
    B, C = (torch.randn(*shape, generator=g).to(device) for _ in range(2))
    D, bias = torch.randn(dim, generator=g).to(device), torch.randn(dim, generator=g).to(device)
    s1, s2 = state.clone(), state.clone()
    out = selective_state_update_triton(s1, x, dt, A, B, C, D, z, bias, True)
    ref = selective_state_update_ref(s2, x, dt, A, B, C, D, z, bias, True)
    torch.testing.assert_close(out, ref, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(s1, s2, rtol=6e-4, atol=2e-3)


def test_decode_steps_equal_scan(device: str) -> None:
    """Running the decode step token by token gives the scan's outputs and final state."""
    g = torch.Generator().manual_seed(0)
    batch, dim, dstate, seqlen = 2, 4, 8, 9
    u, delta, z = (torch.randn(batch, dim, seqlen, generator=g).to(device) for _ in range(3))
    delta = 0.5 * delta.abs()
    A = (-0.5 - torch.rand(dim, dstate, generator=g)).to(device)
    B, C = (torch.randn(batch, dstate, seqlen, generator=g).to(device) for _ in range(2))
    D, bias = torch.randn(dim, generator=g).to(device), torch.randn(dim, generator=g).to(device)
    out, last = selective_scan_triton(u, delta, A, B, C, D, z, bias, True, True)
    state = torch.zeros(batch, dim, dstate, device=device)
    steps = [
        selective_state_update(
            state,
            u[..., t],
            delta[..., t],
            A,
            B[..., t],
            C[..., t],
            D,
            z[..., t],
            bias,
            True,
            backend="triton",
        )
        for t in range(seqlen)
    ]
    torch.testing.assert_close(torch.stack(steps, -1), out, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(state, last, rtol=6e-4, atol=2e-3)


@pytest.mark.parametrize("seqlen", [1, 5, 70])
@pytest.mark.parametrize("width", [2, 4])
@pytest.mark.parametrize("activation", [None, "silu"])
def test_causal_conv1d(device: str, seqlen: int, width: int, activation: str | None) -> None:
    g = torch.Generator().manual_seed(seqlen + width)
    batch, dim = 2, 5
    xz = torch.randn(batch, 2 * dim, seqlen, generator=g).to(device)
    x = xz[:, :dim]  # strided view, like the x half of xz in the Mamba block
    w = torch.randn(dim, width, generator=g).to(device)
    b = torch.randn(dim, generator=g).to(device)
    leaves = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    leaves_ref = [t.detach().clone().requires_grad_() for t in (x, w, b)]
    out = causal_conv1d_triton(*leaves, activation=activation)
    ref = causal_conv1d_ref(*leaves_ref, activation=activation)
    torch.testing.assert_close(out, ref, rtol=6e-4, atol=2e-3)
    gout = torch.randn_like(out)
    for a, r in zip(torch.autograd.grad(out, leaves, gout), torch.autograd.grad(ref, leaves_ref, gout)):
        torch.testing.assert_close(a, r, rtol=6e-4, atol=2e-3)


def test_causal_conv1d_bf16_no_bias_dispatch(device: str) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 4, 33, generator=g).to(device, torch.bfloat16)
    w = torch.randn(4, 4, generator=g).to(device, torch.bfloat16)
    out = causal_conv1d_fn(x, w, None, "silu", backend="triton")
    ref = causal_conv1d_ref(x, w, None, "silu")
    torch.testing.assert_close(out.float(), ref.float(), rtol=3e-2, atol=5e-2)


@pytest.mark.parametrize(("seqlen", "width"), [(1100, 4), (300, 3), (37, 6)])
def test_causal_conv1d_bwd_tiles_and_dx_buffer(device: str, seqlen: int, width: int) -> None:
    """The backward kernel over several time tiles and programs (dweight/dbias atomics), the wide-width
    kernel, and dx written into a strided buffer (the x half of a (batch, 2 * dim, seqlen) gradient)."""
    from mambabench.kernels.causal_conv1d import causal_conv1d_bwd, causal_conv1d_fwd

    g = torch.Generator().manual_seed(seqlen)
    batch, dim = 2, 3
    x = torch.randn(batch, 2 * dim, seqlen, generator=g)[:, :dim]
    w, b = torch.randn(dim, width, generator=g), torch.randn(dim, generator=g)
    gout = torch.randn(batch, dim, seqlen, generator=g)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = causal_conv1d_ref(*leaves, activation="silu")
    ref_grads = torch.autograd.grad(ref, leaves, gout)
    out = causal_conv1d_fwd(x.to(device), w.to(device), b.to(device), True)
    torch.testing.assert_close(out.cpu(), ref.detach(), rtol=6e-4, atol=2e-3)
    buf = torch.full((batch, 2 * dim, seqlen), 7.0, device=device)
    dx, dw, db = causal_conv1d_bwd(
        x.to(device), w.to(device), b.to(device), gout.to(device), True, dx=buf[:, :dim]
    )
    assert dx.data_ptr() == buf.data_ptr() and bool((buf[:, dim:] == 7.0).all())
    for a, r in zip((dx, dw, db), ref_grads):
        torch.testing.assert_close(a.cpu(), r, rtol=6e-4, atol=2e-3)
