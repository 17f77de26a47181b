"""Triton selective scan vs the sequential PyTorch reference (forward and every gradient).

Tolerances are the official mamba-ssm test's: fp32 rtol 6e-4 atol 2e-3, bf16 rtol 3e-2 atol 5e-2;
weight gradients at least 1e-3, raised to the input tolerance when z is present.
"""

from __future__ import annotations

import pytest
import torch

from mambabench.kernels import selective_scan_fn
from mambabench.kernels.scan_launch import scan_launch
from mambabench.kernels.selective_scan import selective_scan_triton
from mambabench.ops import selective_scan_ref

TOL = {torch.float32: (6e-4, 2e-3), torch.bfloat16: (3e-2, 5e-2), torch.float16: (3e-3, 5e-3)}


def make_inputs(
    device: str,
    batch: int = 2,
    dim: int = 4,
    seqlen: int = 16,
    dstate: int = 4,
    bc: str = "var",
    groups: int = 2,
    dtype: torch.dtype = torch.float32,
    has_z: bool = True,
    has_D: bool = True,
    has_bias: bool = True,
    z_strided: bool = False,
    seed: int = 0,
) -> dict[str, torch.Tensor | None]:
    """Random scan inputs with the official layouts (see selective_scan_fn)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape: int, scale: float = 1.0, dt: torch.dtype = dtype) -> torch.Tensor:
        return (scale * torch.randn(*shape, generator=g)).to(device=device, dtype=dt)

    u = rnd(batch, dim, seqlen)
    delta = (0.5 * torch.rand(batch, dim, seqlen, generator=g)).to(device=device, dtype=dtype)
    A = (-0.5 - torch.rand(dim, dstate, generator=g)).to(device)
    if bc == "const":
        B, C = rnd(dim, dstate, dt=torch.float32), rnd(dim, dstate, dt=torch.float32)
    elif bc == "var":
        B, C = rnd(batch, dstate, seqlen), rnd(batch, dstate, seqlen)
    else:
        B, C = rnd(batch, groups, dstate, seqlen), rnd(batch, groups, dstate, seqlen)
    D = rnd(dim, dt=torch.float32) if has_D else None
    bias = rnd(dim, scale=0.5, dt=torch.float32) if has_bias else None
    z = None
    if has_z:
        if z_strided:  # z as the second half of an xz tensor, like mamba_simple.py
            xz = rnd(batch, 2 * dim, seqlen)
            z = xz[:, dim:]
        else:
            z = rnd(batch, dim, seqlen)
    return {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": bias}


def check_scan(
    inputs: dict, softplus: bool, return_last: bool, dtype: torch.dtype, deterministic: bool = False
) -> None:
    names = [k for k, v in inputs.items() if v is not None]
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    leaves_ref = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    args = [leaves.get(k) for k in inputs]
    args_ref = [leaves_ref.get(k) for k in inputs]
    res = selective_scan_triton(
        *args, delta_softplus=softplus, return_last_state=return_last, deterministic=deterministic
    )
    ref = selective_scan_ref(*args_ref, delta_softplus=softplus, return_last_state=return_last)
    out, out_ref = (res[0], ref[0]) if return_last else (res, ref)
    rtol, atol = TOL[dtype]
    assert out.dtype == out_ref.dtype and out.shape == out_ref.shape
    torch.testing.assert_close(out.float(), out_ref.float(), rtol=rtol, atol=atol)
    if return_last:
        torch.testing.assert_close(res[1], ref[1], rtol=rtol, atol=atol)
    gout = torch.randn_like(out)
    grads = torch.autograd.grad(out, [leaves[k] for k in names], gout)
    grads_ref = torch.autograd.grad(out_ref, [leaves_ref[k] for k in names], gout)
    rtolw, atolw = (max(1e-3, rtol), max(1e-3, atol)) if inputs["z"] is not None else (1e-3, 1e-3)
    for name, gr, gr_ref in zip(names, grads, grads_ref):
        weight = name in ("A", "D", "delta_bias") or (name in ("B", "C") and inputs[name].dim() == 2)
        rt, at = (rtolw, atolw) if weight else (rtol, atol)
        if weight:  # weight grads sum over batch and time: compare relative to their scale
            at = at * max(1.0, gr_ref.abs().max().item())
        assert gr.shape == gr_ref.shape and gr.dtype == gr_ref.dtype, name
        torch.testing.assert_close(
            gr.float(), gr_ref.float(), rtol=rt, atol=at, msg=lambda m, n=name: f"d{n}: {m}"
        )


@pytest.mark.parametrize("seqlen", [1, 7, 128, 130])
@pytest.mark.parametrize("dstate", [1, 4, 16])
@pytest.mark.parametrize("bc", ["const", "var", "grouped"])
def test_scan_shapes_fp32(device: str, seqlen: int, dstate: int, bc: str) -> None:
    inputs = make_inputs(device, seqlen=seqlen, dstate=dstate, bc=bc)
    check_scan(inputs, softplus=True, return_last=True, dtype=torch.float32)


@pytest.mark.parametrize("has_z", [False, True])
@pytest.mark.parametrize("has_D", [False, True])
@pytest.mark.parametrize("has_bias", [False, True])
@pytest.mark.parametrize("softplus", [False, True])
def test_scan_options(device: str, has_z: bool, has_D: bool, has_bias: bool, softplus: bool) -> None:
    inputs = make_inputs(
        device, seqlen=23, dstate=4, bc="var", has_z=has_z, has_D=has_D, has_bias=has_bias, seed=1
    )
    check_scan(inputs, softplus=softplus, return_last=False, dtype=torch.float32)


@pytest.mark.parametrize("bc", ["const", "var", "grouped"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_scan_half(device: str, bc: str, dtype: torch.dtype) -> None:
    inputs = make_inputs(device, seqlen=100, dstate=16, bc=bc, dtype=dtype, seed=2)
    check_scan(inputs, softplus=True, return_last=True, dtype=dtype)


@pytest.mark.parametrize("deterministic", [False, True])
def test_scan_strided_z_and_odd_dim(device: str, deterministic: bool) -> None:
    # dim 6 with 3 groups: BLOCK_D must shrink so a program never spans two groups
    inputs = make_inputs(
        device, batch=2, dim=6, groups=3, seqlen=45, dstate=5, bc="grouped", z_strided=True, seed=3
    )
    assert not inputs["z"].is_contiguous()
    check_scan(inputs, softplus=True, return_last=True, dtype=torch.float32, deterministic=deterministic)


def test_scan_delta_hbl_layout(device: str) -> None:
    # delta with "HBL" memory order (strides L, B*L, 1) as produced inside mamba_inner_fn
    inputs = make_inputs(device, batch=2, dim=4, seqlen=33, dstate=4, bc="var", seed=4)
    inputs["delta"] = inputs["delta"].transpose(0, 1).contiguous().transpose(0, 1)
    assert inputs["delta"].stride(0) == 33 and inputs["delta"].stride(-1) == 1
    check_scan(inputs, softplus=True, return_last=False, dtype=torch.float32)


@pytest.mark.parametrize(("bc", "dtype"), [("var", torch.float32), ("grouped", torch.bfloat16)])
def test_scan_long_sequence(device: str, bc: str, dtype: torch.dtype) -> None:
    # 2049 steps: crosses the 2048-step chunk of the official kernel and many of our tiles
    inputs = make_inputs(device, batch=1, dim=2, groups=2, seqlen=2049, dstate=4, bc=bc, dtype=dtype, seed=5)
    check_scan(inputs, softplus=True, return_last=True, dtype=dtype)


def test_deterministic_matches_atomic(device: str) -> None:
    inputs = make_inputs(device, batch=1, dim=8, seqlen=40, dstate=4, bc="var", seed=6)
    outs = []
    for det in (False, True):
        leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
        out = selective_scan_triton(*[leaves.get(k) for k in inputs], delta_softplus=True, deterministic=det)
        out.sum().backward()
        outs.append([leaves["B"].grad, leaves["C"].grad])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_dispatch_triton_backend(device: str) -> None:
    inputs = make_inputs(device, seqlen=9, dstate=4, bc="var", seed=7)
    out = selective_scan_fn(*inputs.values(), delta_softplus=True, backend="triton")
    ref = selective_scan_fn(*inputs.values(), delta_softplus=True, backend="reference")
    torch.testing.assert_close(out, ref, rtol=6e-4, atol=2e-3)


def test_complex_a_falls_back(device: str) -> None:
    inputs = make_inputs(device, seqlen=5, dstate=2, bc="const", has_z=False, seed=8)
    inputs["A"] = torch.complex(inputs["A"], torch.ones_like(inputs["A"]))
    inputs["B"] = inputs["B"].to(torch.complex64)
    inputs["C"] = inputs["C"].to(torch.complex64)
    with pytest.warns(UserWarning, match="complex A"):
        out = selective_scan_triton(*inputs.values())
    torch.testing.assert_close(out, selective_scan_ref(*inputs.values()))


def test_no_grad_forward_saves_nothing(device: str) -> None:
    inputs = make_inputs(device, seqlen=20, dstate=4, bc="var", seed=9)
    with torch.no_grad():
        out, last = selective_scan_triton(*inputs.values(), delta_softplus=True, return_last_state=True)
    ref, last_ref = selective_scan_ref(*inputs.values(), delta_softplus=True, return_last_state=True)
    torch.testing.assert_close(out, ref, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(last, last_ref, rtol=6e-4, atol=2e-3)


@pytest.mark.parametrize(("dstate", "bc"), [(40, "var"), (256, "const")])
def test_scan_large_dstate(device: str, dstate: int, bc: str) -> None:
    # dstate > the time tile: carries use a [BLOCK_D, BLOCK_N] tile and a run-time loop over states
    inputs = make_inputs(device, batch=1, dim=2, seqlen=20, dstate=dstate, bc=bc, seed=10)
    check_scan(inputs, softplus=True, return_last=True, dtype=torch.float32)


@pytest.mark.parametrize(
    ("bc", "dtype", "seqlen", "dstate", "deterministic"),
    [
        ("var", torch.float32, 130, 16, False),
        ("const", torch.float32, 37, 3, False),
        ("grouped", torch.bfloat16, 64, 4, False),
        ("var", torch.float32, 300, 4, True),
    ],
)
def test_sequential_family(
    device: str, bc: str, dtype: torch.dtype, seqlen: int, dstate: int, deterministic: bool
) -> None:
    # family=sequential: a channel's states on a few lanes (kernels/scan_sequential.py); seqlen 130/37
    # leave a partial time tile, 300 spans three 128-step chunks of saved states
    inputs = make_inputs(device, seqlen=seqlen, dstate=dstate, bc=bc, dtype=dtype, seed=7)
    with scan_launch(family="sequential"):
        check_scan(inputs, softplus=True, return_last=True, dtype=dtype, deterministic=deterministic)


@pytest.mark.parametrize(
    ("lanes", "warps", "dstate", "bc", "split", "det"),
    [
        (1, 1, 4, "var", 0, False),
        (2, 2, 16, "grouped", 0, False),
        (8, 4, 12, "var", 0, False),
        (4, 2, 5, "const", 0, False),
        (4, 1, 16, "var", 64, False),
        (2, 1, 3, "const", 32, False),
        (4, 1, 16, "var", 0, False),
        (4, 1, 13, "var", 0, True),
    ],
)
def test_sequential_backward_lanes(
    device: str, lanes: int, warps: int, dstate: int, bc: str, split: int, det: bool
) -> None:
    # the sequential backward with the states of a channel spread over 1-8 lanes, several warps per
    # program (cross-warp dB/dC sums), dstate not a multiple of the lanes, two 32-step chunks plus a
    # remainder; split > 0: time cut into segments (16 rows here: 3 segments, the last a partial
    # chunk); 4 lanes x 8 channels in one warp is the GPU's lane reduce-scatter of dB/dC
    cfg = {"bwd_lanes": lanes, "bwd_warps": warps, "CHUNK": 32, "split_rows": split, "split_lanes": lanes}
    inputs = make_inputs(device, dim=8, seqlen=70, dstate=dstate, bc=bc, seed=12)
    with scan_launch(family="sequential", sequential=cfg):
        check_scan(inputs, softplus=True, return_last=False, dtype=torch.float32, deterministic=det)


@pytest.mark.parametrize(
    ("lanes", "dstate", "bc", "seqlen", "split", "dtype"),
    [
        (4, 16, "var", 70, 0, torch.float32),
        (8, 12, "grouped", 64, 0, torch.bfloat16),
        (2, 5, "const", 37, 0, torch.float32),
        (4, 16, "var", 130, 64, torch.bfloat16),
        (4, 3, "var", 7, 0, torch.float32),
    ],
)
def test_forward_prefetch(
    device: str, lanes: int, dstate: int, bc: str, seqlen: int, split: int, dtype: torch.dtype
) -> None:
    # the sequential forward that loads the next time tile before running this one (PREFETCH): partial
    # last tiles (70, 37, 7 steps), constant / grouped B and C, dstate not a multiple of the lanes, and
    # time segments (split: 16 rows -> 3 segments of 32-step chunks) whose last tile reloads
    cfg = {"lanes": lanes, "CHUNK": 32, "prefetch": 1, "split_rows": split, "fwd_split_rows": split}
    inputs = make_inputs(device, dim=8, seqlen=seqlen, dstate=dstate, bc=bc, dtype=dtype, seed=21)
    with scan_launch(family="sequential", sequential=cfg):
        check_scan(inputs, softplus=True, return_last=True, dtype=dtype)


@pytest.mark.parametrize(
    ("min_rows", "nograd_min_rows", "bc", "seqlen", "nograd_sequential"),
    [
        (0, 0, "var", 130, True),
        (0, 0, "grouped", 64, True),
        (None, 0, "var", 130, False),
        (None, None, "var", 130, True),
    ],
)
def test_default_family_split(
    device: str,
    monkeypatch: pytest.MonkeyPatch,
    min_rows: int | None,
    nograd_min_rows: int | None,
    bc: str,
    seqlen: int,
    nograd_sequential: bool,
) -> None:
    # the default ("auto") for dstate <= 16: sequential backward after the sequential forward (many
    # rows; NOGRAD_SEQUENTIAL_MIN_ROWS lowered so the small shape takes it) or after the tiled forward
    # (no-grad between NOGRAD_TILED_MIN_ROWS, lowered here, and NOGRAD_SEQUENTIAL_MIN_ROWS); very few
    # rows: sequential no-grad too
    from mambabench.kernels import scan_launch as sl

    if min_rows is not None:
        monkeypatch.setattr(sl, "NOGRAD_SEQUENTIAL_MIN_ROWS", min_rows)
    if nograd_min_rows is not None:
        monkeypatch.setattr(sl, "NOGRAD_TILED_MIN_ROWS", nograd_min_rows)
    inputs = make_inputs(device, seqlen=seqlen, dstate=16, bc=bc, dtype=torch.bfloat16, seed=8)
    with scan_launch(**vars(sl.ScanLaunch())) as launch:
        assert sl.sequential_forward_runs(inputs["u"], 16, False, launch) == nograd_sequential
        assert sl.sequential_forward_runs(inputs["u"], 16, True, launch)  # training: time-split for few rows
        assert sl.sequential_backward_runs(16, launch)
        check_scan(inputs, softplus=True, return_last=True, dtype=torch.bfloat16)


@pytest.mark.parametrize(("dstate", "bc"), [(16, "var"), (4, "grouped")])
def test_tiled_family(device: str, dstate: int, bc: str) -> None:
    # family=tiled: the associative-scan kernels forward and backward at dstate <= 16
    inputs = make_inputs(device, seqlen=130, dstate=dstate, bc=bc, seed=13)
    with scan_launch(family="tiled"):
        check_scan(inputs, softplus=True, return_last=True, dtype=torch.float32)


@pytest.mark.parametrize("dstate", [4, 16])
def test_forward_backward_pair_writes_into_given_buffers(device: str, dstate: int) -> None:
    # the non-autograd pair used by fused callers: same numbers as the autograd Function, and du / dz
    # written straight into views of one (batch, 2 * dim, seqlen) gradient buffer
    from mambabench.kernels.selective_scan import selective_scan_backward, selective_scan_forward

    inputs = make_inputs(device, dim=4, seqlen=70, dstate=dstate, bc="var", z_strided=True, seed=14)
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    args = [inputs[k] for k in names]
    out, residual, _ = selective_scan_forward(*args, delta_softplus=True)
    leaves = [a.detach().clone().requires_grad_() for a in args]
    ref = selective_scan_triton(*leaves, delta_softplus=True)
    torch.testing.assert_close(out, ref)
    g = torch.randn_like(out)
    dxz = torch.full((2, 8, 70), float("nan"), device=device)
    grads = selective_scan_backward(*args, True, residual, g, du_out=dxz[:, :4], dz_out=dxz[:, 4:])
    grads_ref = torch.autograd.grad(ref, leaves, g)
    assert grads[0].data_ptr() == dxz.data_ptr() and not dxz.isnan().any()
    order = ("u", "delta", "A", "B", "C", "D", "delta_bias", "z")  # the official bwd's order
    for name, a in zip(order, grads):
        b = grads_ref[names.index(name)]
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"d{n}: {m}")
