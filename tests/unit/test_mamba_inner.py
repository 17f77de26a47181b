"""The fused Mamba block path (``Mamba(fused=True)``, :mod:`mambabench.models.mixers.mamba_fused`): same outputs and
gradients as the unfused mixer, fewer saved bytes, and the memory script on a tiny shape."""

from __future__ import annotations

import copy
import csv
import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import yaml

from mambabench.models.mixers import Mamba

ROOT = Path(__file__).resolve().parents[2]


def _pair(backend: str = "reference", dtype: torch.dtype = torch.float32, **kw) -> tuple[Mamba, Mamba]:
    """An unfused mixer and a fused copy with the same parameters (d_model 32, N 8, R 4)."""
    torch.manual_seed(0)
    unfused = Mamba(32, d_state=8, dt_rank=4, scan_backend=backend, **kw).to(dtype)
    fused = copy.deepcopy(unfused)
    fused.fused = True
    return unfused, fused


def _run(mixer: Mamba, hidden: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Output, input gradient and parameter gradients of one forward/backward."""
    mixer.zero_grad(set_to_none=True)
    h = hidden.detach().clone().requires_grad_()
    out = mixer(h)
    out.backward(grad)
    return out.detach(), h.grad, {n: p.grad for n, p in mixer.named_parameters()}


def _assert_same(unfused: Mamba, fused: Mamba, hidden: torch.Tensor, **tol) -> None:
    torch.manual_seed(1)
    grad = torch.randn(hidden.shape, dtype=hidden.dtype)
    out_u, dh_u, grads_u = _run(unfused, hidden, grad)
    out_f, dh_f, grads_f = _run(fused, hidden, grad)
    torch.testing.assert_close(out_f, out_u, **tol)
    torch.testing.assert_close(dh_f, dh_u, **tol)
    assert grads_f.keys() == grads_u.keys()
    for name, g in grads_u.items():
        assert grads_f[name] is not None, name
        torch.testing.assert_close(grads_f[name], g, **tol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("backend", ["reference", "chunked"])
@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"bias": True},
        {"conv_bias": False},
        {"bias": True, "conv_bias": False},
        {"d_conv": 2, "expand": 1},
    ],
)
def test_fused_matches_unfused_fp32(backend: str, variant: dict) -> None:
    """Forward and every parameter/input gradient equal the unfused mixer's (fp32)."""
    unfused, fused = _pair(backend, **variant)
    hidden = torch.randn(2, 24, 32)
    _assert_same(unfused, fused, hidden, rtol=1e-4, atol=1e-5)


def test_fused_matches_unfused_under_bf16_autocast() -> None:
    """Under CPU bf16 autocast: same dtypes, close values (bf16 matmuls in a different order)."""
    unfused, fused = _pair()
    hidden = torch.randn(2, 16, 32)
    grad = torch.randn(2, 16, 32, dtype=torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_u, dh_u, grads_u = _run(unfused, hidden, grad)
        out_f, dh_f, grads_f = _run(fused, hidden, grad)
    assert out_f.dtype == out_u.dtype == torch.bfloat16
    torch.testing.assert_close(out_f, out_u, rtol=5e-2, atol=5e-2)
    torch.testing.assert_close(dh_f, dh_u, rtol=5e-2, atol=5e-2)
    for name, g in grads_u.items():
        assert grads_f[name].dtype == g.dtype == torch.float32, name
        assert torch.isfinite(grads_f[name]).all(), name
        rel = (grads_f[name] - g).norm() / g.norm().clamp_min(1e-6)
        assert rel < 5e-2, (name, rel.item())


def test_fused_no_grad_and_decoding_paths() -> None:
    """Without gradients the fused path computes the same function; with a cache it decodes unfused."""
    unfused, fused = _pair()
    hidden = torch.randn(2, 12, 32)
    with torch.no_grad():
        torch.testing.assert_close(fused(hidden), unfused(hidden), rtol=1e-4, atol=1e-5)
        cache_u = unfused.allocate_cache(2, torch.float32, torch.device("cpu"))
        cache_f = fused.allocate_cache(2, torch.float32, torch.device("cpu"))
        torch.testing.assert_close(fused(hidden, cache=cache_f), unfused(hidden, cache=cache_u))
        torch.testing.assert_close(cache_f.ssm_state, cache_u.ssm_state)


def test_fused_composes_with_outer_saved_tensor_hooks_and_checkpoint() -> None:
    """Tensors the fused path keeps go through the hooks active outside it (e.g. CPU offload, non-reentrant
    checkpointing); with saved-tensor hooks disabled it keeps everything; the gradients do not change."""
    unfused, fused = _pair()
    hidden = torch.randn(2, 16, 32)
    grad = torch.randn(2, 16, 32)
    _, dh_u, grads_u = _run(unfused, hidden, grad)

    packed: list[int] = []

    def pack(t: torch.Tensor) -> tuple[torch.Tensor]:
        packed.append(t.numel())
        return (t.clone(),)  # a copy: the fused path must not rely on the identity of what it gets back

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box[0]):
        _, dh_f, grads_f = _run(fused, hidden, grad)
    assert packed
    torch.testing.assert_close(dh_f, dh_u, rtol=1e-4, atol=1e-5)
    for name, g in grads_u.items():
        torch.testing.assert_close(grads_f[name], g, rtol=1e-4, atol=1e-5)

    fused.zero_grad(set_to_none=True)
    h = hidden.clone().requires_grad_()
    torch.utils.checkpoint.checkpoint(fused, h, use_reentrant=False).backward(grad)
    torch.testing.assert_close(h.grad, dh_u, rtol=1e-4, atol=1e-5)
    for name, p in fused.named_parameters():
        torch.testing.assert_close(p.grad, grads_u[name], rtol=1e-4, atol=1e-5)

    with torch.autograd.graph.disable_saved_tensors_hooks("no hooks"):  # then the fused path drops nothing
        _, dh_f, _ = _run(fused, hidden, grad)
    torch.testing.assert_close(dh_f, dh_u, rtol=1e-4, atol=1e-5)


def _saved_bytes(mixer: Mamba, hidden: torch.Tensor) -> tuple[int, set[int]]:
    """Bytes of distinct storages autograd saves in one forward, and their addresses."""
    storages: dict[int, int] = {}
    keep: list[torch.Tensor] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        s = t.untyped_storage()
        storages.setdefault(s.data_ptr(), s.nbytes())
        keep.append(t)
        return t

    params = {p.untyped_storage().data_ptr() for p in mixer.parameters()}
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        mixer(hidden.clone().requires_grad_())
    return sum(n for ptr, n in storages.items() if ptr not in params), set(storages)


def test_fused_saves_less_than_unfused() -> None:
    """With the chunked scan (which saves u and delta as given), the fused path keeps fewer bytes."""
    unfused, fused = _pair("chunked")
    hidden = torch.randn(2, 64, 32)
    assert _saved_bytes(fused, hidden)[0] < _saved_bytes(unfused, hidden)[0]


@pytest.mark.parametrize(
    "kw",
    [
        {"A_init": "s4d_lin"},
        {"selective_B": False},
        {"selective_delta": False},
        {"gate": False},
        {"inner_layer": "s4_real"},
    ],
)
def test_fused_refuses_variants_it_does_not_support(kw: dict) -> None:
    with pytest.raises(ValueError, match="fused=True"):
        Mamba(32, d_state=8, fused=True, **kw)


def test_fused_config_keys() -> None:
    """The mixer config has the switch (off by default); the 130M preset turns it on."""
    s6 = yaml.safe_load((ROOT / "configs/model/mixer/s6.yaml").read_text())
    assert s6["fused"] is False
    preset = yaml.safe_load((ROOT / "configs/model/mamba_130m.yaml").read_text())
    assert preset["mixer"]["fused"] is True


def test_block_memory_script_smoke(tmp_path: Path) -> None:
    """scripts/block_memory.py on a tiny block: CSV rows for both paths, and the fused path keeps neither
    the conv output nor delta (only xz, y, x_dbl and the scan states grow with the tokens in the mixer)."""
    spec = importlib.util.spec_from_file_location("block_memory", ROOT / "scripts" / "block_memory.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    out = tmp_path / "bm.csv"
    rows = module.main(
        [
            "--d-model",
            "32",
            "--d-state",
            "8",
            "--dt-rank",
            "4",
            "--batch",
            "2",
            "--seqlen",
            "40",
            "--state-chunk",
            "8",
            "--target-batch",
            "4",
            "--target-seqlen",
            "64",
            "--layers",
            "2",
            "--out",
            str(out),
        ]
    )
    with out.open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)

    def per_token(path: str) -> float:
        return sum(r["bytes_per_token"] for r in rows if r["path"] == path)

    assert per_token("fused") < 0.8 * per_token("unfused")
    fused = [r for r in rows if r["path"] == "fused" and r["kind"] == "per-token"]
    assert not any("conv" in r["site"] for r in fused)
    # what the scan keeps in the fused path: z (a view of xz), B/C (views of x_dbl), its states; not u, delta
    scan_tensors = {r["tensor"] for r in fused if "scan" in r["site"]}
    assert scan_tensors == {
        "bfloat16 (B, E, L) in 2x",
        "bfloat16 (B, N, L) in 2.5x",
        "float32 (B, E, L/c, N)",
    }


def test_rms_norm_matches_autograd_and_keeps_input_and_rstd_only() -> None:
    """RMSNorm's Function: same output and gradients as plain autograd of its formula; saves x, weight, rstd."""
    from mambabench.models.norms import RMSNorm

    torch.manual_seed(0)
    norm = RMSNorm(24)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 5, 24, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    w2 = norm.weight.detach().clone().requires_grad_()
    saved: list[torch.Size] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.shape)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = norm(x)
    assert sorted(saved) == sorted([x.shape, norm.weight.shape, torch.Size([3, 5, 1])])
    ref = x2 * torch.rsqrt(x2.pow(2).mean(-1, keepdim=True) + norm.eps) * w2
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norm.weight.grad, w2.grad, rtol=1e-5, atol=1e-6)


def test_fused_in_proj_gives_row_major_hidden_gradient() -> None:
    """in_proj of the fused path: xz with unit stride along seqlen, and the gradient of hidden comes back
    contiguous (batch, seqlen, d_model), equal to plain autograd's (which is a transposed view)."""
    from mambabench.models.mixers.mamba_fused import mamba_in_proj

    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 12, bias=True)
    h = torch.randn(2, 5, 8, requires_grad=True)
    xz = mamba_in_proj(h, lin.weight, lin.bias)
    assert xz.shape == (2, 12, 5) and xz.stride(-1) == 1
    g = torch.randn(2, 12, 5)
    dh, dw, db = torch.autograd.grad(xz, (h, lin.weight, lin.bias), g)
    ref = lin(h).transpose(1, 2)
    torch.testing.assert_close(xz, ref)
    for a, r in zip((dh, dw, db), torch.autograd.grad(ref, (h, lin.weight, lin.bias), g)):
        torch.testing.assert_close(a, r)
    assert dh.is_contiguous()
