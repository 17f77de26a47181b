"""The PyTorch reference scan: sequential == chunked, gradients (gradcheck), decode step, edge cases."""

from __future__ import annotations

import itertools

import pytest
import torch

from mambabench.kernels import resolve_backend, selective_scan_fn
from mambabench.ops import selective_scan_chunked, selective_scan_ref, selective_state_update_ref


def make_inputs(
    batch=2, dim=4, seqlen=13, dstate=3, bc="variable", groups=1, complex_a=False, dtype=torch.float32, seed=0
):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    u, delta, z = r(batch, dim, seqlen), r(batch, dim, seqlen) * 0.5, r(batch, dim, seqlen)
    if complex_a:
        A = torch.complex(-torch.rand(dim, dstate, generator=g) - 0.1, torch.randn(dim, dstate, generator=g))
    else:
        A = -torch.rand(dim, dstate, generator=g, dtype=dtype) - 0.1
    last = 2 * seqlen if complex_a else seqlen
    if bc == "constant":
        B = torch.randn(dim, dstate, generator=g, dtype=torch.complex64 if complex_a else dtype)
        C = torch.randn(dim, dstate, generator=g, dtype=torch.complex64 if complex_a else dtype)
    elif bc == "variable":
        B, C = r(batch, dstate, last), r(batch, dstate, last)
    else:
        B, C = r(batch, groups, dstate, last), r(batch, groups, dstate, last)
    D, bias = r(dim), r(dim)
    return u, delta, A, B, C, D, z, bias


@pytest.mark.parametrize(
    ("bc", "complex_a", "with_z", "softplus"),
    list(itertools.product(["constant", "variable", "grouped"], [False, True], [False, True], [False, True])),
)
def test_chunked_equals_sequential(bc, complex_a, with_z, softplus) -> None:
    u, delta, A, B, C, D, z, bias = make_inputs(dim=4, bc=bc, groups=2, complex_a=complex_a)
    z = z if with_z else None
    ref, ref_state = selective_scan_ref(u, delta, A, B, C, D, z, bias, softplus, return_last_state=True)
    out, state = selective_scan_chunked(
        u, delta, A, B, C, D, z, bias, softplus, return_last_state=True, chunk_size=4
    )
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(state, ref_state, rtol=1e-4, atol=1e-4)


def test_matches_explicit_recurrence() -> None:
    """Against the equations written out with Python loops over every index (tiny case)."""
    u, delta, A, B, C, D, z, bias = make_inputs(batch=1, dim=2, seqlen=5, dstate=2)
    out = selective_scan_ref(u, delta, A, B, C, D, z, bias, delta_softplus=True)
    expected = torch.zeros_like(out)
    for d in range(2):
        h = torch.zeros(2)
        for t in range(5):
            dt = torch.nn.functional.softplus(delta[0, d, t] + bias[d])
            h = torch.exp(dt * A[d]) * h + dt * B[0, :, t] * u[0, d, t]
            y = (h * C[0, :, t]).sum() + D[d] * u[0, d, t]
            expected[0, d, t] = y * z[0, d, t] * torch.sigmoid(z[0, d, t])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_theorem1_gated_rnn() -> None:
    """Paper Theorem 1: N=1, A=-1, B=1, C=1 gives h_t = (1-g_t) h_{t-1} + g_t x_t with g = sigmoid(delta_raw)
    when delta = softplus(delta_raw), since 1 - exp(-softplus(s)) = sigmoid(s)."""
    g = torch.Generator().manual_seed(1)
    x, s = torch.randn(1, 1, 20, generator=g), torch.randn(1, 1, 20, generator=g)
    # B = (1 - exp(-delta)) / delta turns the Euler B-bar into the exact ZOH one for A = -1.
    delta = torch.nn.functional.softplus(s)
    out = selective_scan_ref(
        x * (1 - torch.exp(-delta)) / delta, delta, -torch.ones(1, 1), torch.ones(1, 1), torch.ones(1, 1)
    )
    h, expected = torch.zeros(()), []
    for t in range(20):
        gate = torch.sigmoid(s[0, 0, t])
        h = (1 - gate) * h + gate * x[0, 0, t]
        expected.append(h)
    torch.testing.assert_close(out[0, 0], torch.stack(expected), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bc", ["constant", "variable", "grouped"])
def test_gradcheck_float64(bc) -> None:
    u, delta, A, B, C, D, z, bias = make_inputs(
        batch=1, dim=2, seqlen=4, dstate=2, bc=bc, groups=2, dtype=torch.float64
    )
    tensors = [t.detach().requires_grad_() for t in (u, delta, A, B, C, D, z, bias)]

    def scan(*args):
        return selective_scan_ref(*args, delta_softplus=True)

    assert torch.autograd.gradcheck(scan, tensors, eps=1e-6, atol=1e-5)


def test_state_update_equals_scan_steps() -> None:
    u, delta, A, B, C, D, z, bias = make_inputs(batch=2, dim=4, seqlen=6, dstate=3, bc="grouped", groups=2)
    full = selective_scan_ref(u, delta, A, B, C, D, z, bias, delta_softplus=True)
    state = torch.zeros(2, 4, 3)
    for t in range(6):
        y = selective_state_update_ref(
            state, u[..., t], delta[..., t], A, B[..., t], C[..., t], D, z[..., t], bias, dt_softplus=True
        )
        torch.testing.assert_close(y, full[..., t], rtol=1e-5, atol=1e-5)


def test_initial_state_continues_a_split_sequence() -> None:
    u, delta, A, B, C, D, z, bias = make_inputs(seqlen=10)
    full = selective_scan_ref(u, delta, A, B, C, D, z, bias, True)
    first, h = selective_scan_ref(
        u[..., :6],
        delta[..., :6],
        A,
        B[..., :6],
        C[..., :6],
        D,
        z[..., :6],
        bias,
        True,
        return_last_state=True,
    )
    second = selective_scan_ref(
        u[..., 6:], delta[..., 6:], A, B[..., 6:], C[..., 6:], D, z[..., 6:], bias, True, initial_state=h
    )
    torch.testing.assert_close(torch.cat([first, second], -1), full, rtol=1e-5, atol=1e-5)


def test_output_dtype_follows_input_and_seqlen_one() -> None:
    u, delta, A, B, C, D, z, bias = make_inputs(seqlen=1)
    out = selective_scan_ref(
        u.bfloat16(), delta.bfloat16(), A, B.bfloat16(), C.bfloat16(), D, z.bfloat16(), bias
    )
    assert out.dtype == torch.bfloat16 and out.shape == (2, 4, 1)


def test_dispatch_picks_reference_on_cpu_and_rejects_unknown() -> None:
    u = torch.zeros(1, 1, 1)
    assert resolve_backend("auto", u) == "reference"
    with pytest.raises(ValueError, match="unknown scan backend 'cuda'; choose one of"):
        resolve_backend("cuda", u)
    args = make_inputs()
    torch.testing.assert_close(
        selective_scan_fn(*args[:5], backend="chunked"),
        selective_scan_fn(*args[:5], backend="reference"),
        rtol=1e-4,
        atol=1e-4,
    )
