"""Triton selective scan vs the sequential PyTorch reference (forward and every gradient).

Tolerances are the official mamba-ssm test's: fp32 rtol 6e-4 atol 2e-3, bf16 rtol 3e-2 atol 5e-2;
weight gradients at least 1e-3, raised to the input tolerance when z is present.
"""

from __future__ import annotations

import pytest
import torch

from mambabench.kernels import selective_scan_fn
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


def check_scan(inputs: dict, softplus: bool, return_last: bool, dtype: torch.dtype,
               deterministic: bool = False) -> None:
    names = [k for k, v in inputs.items() if v is not None]
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    leaves_ref = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
    args = [leaves.get(k) for k in inputs]
    args_ref = [leaves_ref.get(k) for k in inputs]
    res = selective_scan_triton(*args, delta_softplus=softplus, return_last_state=return_last,
                                deterministic=deterministic)
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
        torch.testing.assert_close(gr.float(), gr_ref.float(), rtol=rt, atol=at, msg=lambda m, n=name: f"d{n}: {m}")


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
    inputs = make_inputs(device, seqlen=23, dstate=4, bc="var", has_z=has_z, has_D=has_D,
                         has_bias=has_bias, seed=1)
    check_scan(inputs, softplus=softplus, return_last=False, dtype=torch.float32)


@pytest.mark.parametrize("bc", ["const", "var", "grouped"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_scan_half(device: str, bc: str, dtype: torch.dtype) -> None:
    inputs = make_inputs(device, seqlen=100, dstate=16, bc=bc, dtype=dtype, seed=2)
    check_scan(inputs, softplus=True, return_last=True, dtype=dtype)


@pytest.mark.parametrize("deterministic", [False, True])
def test_scan_strided_z_and_odd_dim(device: str, deterministic: bool) -> None:
    # dim 6 with 3 groups: BLOCK_D must shrink so a program never spans two groups
    inputs = make_inputs(device, batch=2, dim=6, groups=3, seqlen=45, dstate=5, bc="grouped",
                         z_strided=True, seed=3)
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
    inputs = make_inputs(device, batch=1, dim=2, groups=2, seqlen=2049, dstate=4, bc=bc, dtype=dtype,
                         seed=5)
    check_scan(inputs, softplus=True, return_last=True, dtype=dtype)


def test_deterministic_matches_atomic(device: str) -> None:
    inputs = make_inputs(device, batch=1, dim=8, seqlen=40, dstate=4, bc="var", seed=6)
    outs = []
    for det in (False, True):
        leaves = {k: v.detach().clone().requires_grad_() for k, v in inputs.items() if v is not None}
        out = selective_scan_triton(*[leaves.get(k) for k in inputs], delta_softplus=True,
                                    deterministic=det)
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
    [("var", torch.float32, 130, 16, False), ("const", torch.float32, 37, 3, False),
     ("grouped", torch.bfloat16, 64, 4, False), ("var", torch.float32, 300, 4, True)],
)
def test_sequential_variant(device: str, monkeypatch: pytest.MonkeyPatch, bc: str, dtype: torch.dtype,
                            seqlen: int, dstate: int, deterministic: bool) -> None:
    # MAMBABENCH_SCAN_VARIANT=3: one channel per thread (kernels/scan_sequential.py); seqlen 130/37
    # leave a partial time tile, 300 spans three 128-step chunks of saved states
    import mambabench.kernels.selective_scan as ss

    monkeypatch.setattr(ss, "SCAN_VARIANT", "3")
    inputs = make_inputs(device, seqlen=seqlen, dstate=dstate, bc=bc, dtype=dtype, seed=7)
    check_scan(inputs, softplus=True, return_last=True, dtype=dtype, deterministic=deterministic)


@pytest.mark.parametrize(("lanes", "warps", "dstate", "bc", "split", "det"),
                         [(1, 1, 4, "var", 0, False), (2, 2, 16, "grouped", 0, False), (8, 4, 12, "var", 0, False),
                          (4, 2, 5, "const", 0, False), (4, 1, 16, "var", 64, False), (2, 1, 3, "const", 32, False),
                          (4, 1, 16, "var", 0, False), (4, 1, 13, "var", 0, True)])
def test_sequential_backward_lanes(device: str, monkeypatch: pytest.MonkeyPatch, lanes: int, warps: int,
                                   dstate: int, bc: str, split: int, det: bool) -> None:
    # the v3 backward with the states of a channel spread over 1-8 lanes, several warps per program
    # (cross-warp dB/dC sums), dstate not a multiple of the lanes, two 32-step chunks plus a remainder;
    # split > 0: time cut into segments (16 rows here: 3 segments, the last a partial chunk); 4 lanes
    # x 8 channels in one warp is the GPU's lane reduce-scatter of dB/dC (atomics or partial slots)
    import mambabench.kernels.selective_scan as ss

    monkeypatch.setattr(ss, "SCAN_VARIANT", "3")
    cfg = {**ss._v3_config(8, dstate, 70, 2, 4), "bwd_lanes": lanes, "bwd_warps": warps, "CHUNK": 32,
           "split_rows": split, "split_lanes": lanes}
    monkeypatch.setattr(ss, "V3_OVERRIDE", cfg)
    inputs = make_inputs(device, dim=8, seqlen=70, dstate=dstate, bc=bc, seed=12)
    check_scan(inputs, softplus=True, return_last=False, dtype=torch.float32, deterministic=det)


@pytest.mark.parametrize(("lanes", "dstate", "bc", "seqlen", "split", "dtype"),
                         [(4, 16, "var", 70, 0, torch.float32), (8, 12, "grouped", 64, 0, torch.bfloat16),
                          (2, 5, "const", 37, 0, torch.float32), (4, 16, "var", 130, 64, torch.bfloat16),
                          (4, 3, "var", 7, 0, torch.float32)])
def test_forward_prefetch(device: str, monkeypatch: pytest.MonkeyPatch, lanes: int, dstate: int, bc: str,
                          seqlen: int, split: int, dtype: torch.dtype) -> None:
    # the v3 forward that loads the next time tile before running this one (PREFETCH, for few rows):
    # partial last tiles (70, 37, 7 steps), constant / grouped B and C, dstate not a multiple of the
    # lanes, and time segments (split: 16 rows -> 3 segments of 32-step chunks) whose last tile reloads
    import mambabench.kernels.selective_scan as ss

    monkeypatch.setattr(ss, "SCAN_VARIANT", "3")
    cfg = {**ss._v3_config(8, dstate, seqlen, 2, 4), "lanes": lanes, "CHUNK": 32, "prefetch": 1,
           "split_rows": split, "fwd_split_rows": split}
    monkeypatch.setattr(ss, "V3_OVERRIDE", cfg)
    inputs = make_inputs(device, dim=8, seqlen=seqlen, dstate=dstate, bc=bc, dtype=dtype, seed=21)
    check_scan(inputs, softplus=True, return_last=True, dtype=dtype)


@pytest.mark.parametrize(("min_rows", "nograd_min_rows", "bc", "seqlen", "nograd_v3"),
                         [(0, 0, "var", 130, True), (0, 0, "grouped", 64, True), (None, 0, "var", 130, False),
                          (None, None, "var", 130, True)])
def test_default_kernel_split(device: str, monkeypatch: pytest.MonkeyPatch, min_rows: int | None,
                              nograd_min_rows: int | None, bc: str, seqlen: int, nograd_v3: bool) -> None:
    # the default ("auto") for dstate <= 16: v3 backward after the v3 forward (many rows;
    # V3_NOGRAD_MIN_ROWS lowered so the small shape takes it) or after the v2 forward (no-grad between
    # V2_NOGRAD_MIN_ROWS, lowered here, and V3_NOGRAD_MIN_ROWS); very few rows: v3 no-grad too
    import mambabench.kernels.selective_scan as ss

    if min_rows is not None:
        monkeypatch.setattr(ss, "V3_NOGRAD_MIN_ROWS", min_rows)
    if nograd_min_rows is not None:
        monkeypatch.setattr(ss, "V2_NOGRAD_MIN_ROWS", nograd_min_rows)
    inputs = make_inputs(device, seqlen=seqlen, dstate=16, bc=bc, dtype=torch.bfloat16, seed=8)
    assert ss._v3_forward(inputs["u"], 16) == nograd_v3
    assert ss._v3_forward(inputs["u"], 16, save_states=True)  # training: time-split v3 for few rows
    assert ss._v3_backward(16)
    check_scan(inputs, softplus=True, return_last=True, dtype=torch.bfloat16)


@pytest.mark.parametrize(("dstate", "bc"), [(16, "var"), (4, "grouped")])
def test_v2_variant(device: str, monkeypatch: pytest.MonkeyPatch, dstate: int, bc: str) -> None:
    # MAMBABENCH_SCAN_VARIANT=2: the associative-scan kernels forward and backward at dstate <= 16
    import mambabench.kernels.selective_scan as ss

    monkeypatch.setattr(ss, "SCAN_VARIANT", "2")
    assert not ss._v3_backward(dstate)
    inputs = make_inputs(device, seqlen=130, dstate=dstate, bc=bc, seed=13)
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


@pytest.mark.parametrize(("batch", "dim", "prefetch", "maxnreg"),
                         [(16, 1536, True, 160), (8, 2048, False, 128), (32, 1536, True, 160),
                          (8, 4096, True, 128), (4, 2048, True, 160)])
def test_wave_model_choices(batch: int, dim: int, prefetch: bool, maxnreg: int) -> None:
    # the "auto" prefetch / register cap on an H100 (132 SMs), at L = 2048 (one-warp programs of 8
    # channels), as measured in H100 run 15: e.g. (16, 1536, 2048), 3072 programs, takes both, while
    # (8, 2048, 2048), 2048 programs (one full wave at 18 / 16 per SM), takes neither; (4, 2048),
    # 1024 programs, less than one wave either way, takes both (not measured at this L)
    import mambabench.kernels.selective_scan as ss

    programs = batch * dim // 8
    assert ss.pick_by_waves(programs, 132, ss.FWD_RESIDENT, 1, ss.PREFETCH_GAIN) == int(prefetch)
    assert ss.pick_by_waves(programs, 132, ss.BWD_RESIDENT, 160, ss.MAXNREG_GAIN) == maxnreg
    assert ss.busy_fraction(2048, 16, 132) == pytest.approx(2048 / 2112)
    assert ss._v3_config(dim, 16, 2048, batch, 2)["prefetch"] == -1  # resolved per grid at launch


def test_v3_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # MAMBABENCH_V3_CONFIG overrides launch parameters for a whole run; a bad key names the known ones
    import mambabench.kernels.selective_scan as ss

    monkeypatch.setenv("MAMBABENCH_V3_CONFIG", "prefetch=1, bwd_maxnreg=160")
    cfg = ss._v3_config(2048, 16, 2048, 16, 2)
    assert cfg["prefetch"] == 1 and cfg["bwd_maxnreg"] == 160 and cfg["CHUNK"] == 128
    monkeypatch.setenv("MAMBABENCH_V3_CONFIG", "chunk=256")
    with pytest.raises(ValueError, match="known: .*CHUNK"):
        ss._v3_config(2048, 16, 2048, 16, 2)
