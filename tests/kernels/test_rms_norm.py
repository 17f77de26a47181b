"""Fused residual add + RMSNorm kernel (kernels/rms_norm.py) vs the PyTorch path of Block."""

from __future__ import annotations

import pytest
import torch

from mambabench.kernels.rms_norm import add_rms_norm_triton
from mambabench.models.norms import RMSNorm


@pytest.mark.parametrize(
    ("has_res", "h_dtype", "out_dtype", "batch", "seqlen", "d"),
    [
        (True, torch.bfloat16, torch.bfloat16, 2, 5, 48),
        (True, torch.float32, torch.float32, 2, 5, 48),
        (False, torch.float32, torch.bfloat16, 2, 5, 48),
        (True, torch.bfloat16, torch.bfloat16, 1, 1031, 8),  # 2 rows per backward program, ragged tail
    ],
)
def test_add_rms_norm_matches_pytorch(
    device: str,
    has_res: bool,
    h_dtype: torch.dtype,
    out_dtype: torch.dtype,
    batch: int,
    seqlen: int,
    d: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Values and gradients (hidden, residual, weight) for d not a power of two (masked columns)."""
    from mambabench.kernels import rms_norm

    monkeypatch.setattr(rms_norm, "BWD_PROGRAMS", 1024)  # 1031 rows -> 2 rows per backward program
    g = torch.Generator().manual_seed(int(has_res))
    hidden = torch.randn(batch, seqlen, d, generator=g).to(h_dtype)
    residual = torch.randn(batch, seqlen, d, generator=g) if has_res else None
    norm = RMSNorm(d)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(d, generator=g))
    dout = torch.randn(batch, seqlen, d, generator=g)
    dres = torch.randn(batch, seqlen, d, generator=g)  # what later layers send back to the residual stream

    def leaves(dev: str) -> list[torch.Tensor]:
        ts = [hidden, residual, norm.weight.detach()]
        return [t.detach().to(dev).requires_grad_() if t is not None else None for t in ts]

    ref_in = leaves("cpu")
    res_ref = ref_in[0].float() if ref_in[1] is None else ref_in[1] + ref_in[0]
    out_ref = (res_ref * torch.rsqrt(res_ref.pow(2).mean(-1, keepdim=True) + 1e-5) * ref_in[2]).to(out_dtype)
    ins = leaves(device)
    out, res = add_rms_norm_triton(ins[0], ins[1], ins[2], 1e-5, True, out_dtype)
    assert out.dtype == out_dtype and res.dtype == torch.float32
    torch.testing.assert_close(res.cpu(), res_ref.detach())
    torch.testing.assert_close(
        out.cpu().float(),
        out_ref.detach().float(),
        rtol=1e-2 if out_dtype != torch.float32 else 1e-5,
        atol=1e-2 if out_dtype != torch.float32 else 1e-5,
    )
    want = [t for t in ref_in if t is not None]
    got = [t for t in ins if t is not None]
    ref_grads = torch.autograd.grad([out_ref, res_ref], want, [dout.to(out_dtype), dres])
    grads = torch.autograd.grad([out, res], got, [dout.to(device, out_dtype), dres.to(device)])
    for a, r in zip(grads, ref_grads):
        assert a.dtype == r.dtype
        tol = 1e-2 if a.dtype == torch.bfloat16 else 1e-4
        torch.testing.assert_close(a.cpu(), r, rtol=tol, atol=tol)


def test_lm_with_fused_add_norm_matches_pytorch_path(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """LMHeadModel(fused_add_norm=True) with fused mixers: the blocks and the final norm take the kernel,
    the mixers' in_proj remakes its input from the norm's recipe instead of saving it, the head is the
    Triton SlicedHead (vocab 50 padded to 56), and logits and gradients equal the PyTorch path's."""
    from functools import partial

    from mambabench.models import LMHeadModel, lm, norms
    from mambabench.models.mixers.mamba import Mamba

    monkeypatch.setattr(norms, "_FUSED_ON_CPU", True)
    monkeypatch.setattr(lm, "_SLICED_HEAD_ON_CPU", True)
    from mambabench.kernels import rms_norm

    calls, remade = [], []
    original, original_remake = rms_norm.add_rms_norm_triton, rms_norm.rms_norm_recompute
    monkeypatch.setattr(rms_norm, "add_rms_norm_triton", lambda *a, **k: calls.append(1) or original(*a, **k))
    monkeypatch.setattr(
        rms_norm, "rms_norm_recompute", lambda *a, **k: remade.append(1) or original_remake(*a, **k)
    )
    from mambabench.kernels import head

    heads, original_head = [], head.sliced_head_triton
    monkeypatch.setattr(head, "sliced_head_triton", lambda *a, **k: heads.append(1) or original_head(*a, **k))
    torch.manual_seed(0)
    mixer = partial(Mamba, d_state=4, dt_rank=2, scan_backend="reference", fused=True)
    models = [LMHeadModel(50, 16, 2, mixer, fused_add_norm=f).to(device) for f in (False, True)]
    models[1].load_state_dict(models[0].state_dict())
    ids = torch.randint(0, 50, (2, 7), device=device)
    outs = []
    for m in models:
        with torch.autocast(device, dtype=torch.bfloat16):
            logits = m(ids)
        logits.float().square().mean().backward()
        outs.append((logits.float(), {n: p.grad for n, p in m.named_parameters()}))
    assert len(calls) == 3 and len(remade) == 2  # two blocks and the final norm; two in_proj backwards
    assert len(heads) == 2  # both models (the head itself is checked against nn.Linear + slice below)
    torch.testing.assert_close(outs[1][0], outs[0][0], rtol=2e-2, atol=2e-2)
    for name, grad in outs[0][1].items():
        torch.testing.assert_close(outs[1][1][name], grad, rtol=5e-2, atol=5e-3, msg=name)


def test_sliced_head_matches_linear_then_slice(device: str) -> None:
    """kernels/head.py: logits over the padded head cut to the vocabulary, gradients through the one-pass
    padded gradient, equal to nn.Linear + slice (bf16 autocast)."""
    from mambabench.kernels.head import sliced_head_triton

    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 16, device=device, requires_grad=True)
    weight = torch.randn(40, 16, device=device, requires_grad=True)  # vocab 37 padded to 40
    grad = torch.randn(2, 3, 37, device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        out = sliced_head_triton(hidden, weight, 37)
        ref = torch.nn.functional.linear(hidden, weight)[..., :37]
    assert out.shape == (2, 3, 37) and out.dtype == ref.dtype
    torch.testing.assert_close(out, ref)
    got = torch.autograd.grad(out, (hidden, weight), grad.to(out.dtype))
    want = torch.autograd.grad(ref, (hidden, weight), grad.to(ref.dtype))
    for a, r in zip(got, want):
        assert a.dtype == r.dtype
        torch.testing.assert_close(a, r)


def test_sliced_head_takes_the_cross_entropy_gradient_without_a_copy(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Triton cross-entropy on the sliced head: its padded, zero-filled gradient goes straight into the
    head's backward GEMMs (pad_rows is never called), and the gradients equal nn.Linear + slice +
    F.cross_entropy."""
    from mambabench.kernels import head
    from mambabench.kernels.cross_entropy import cross_entropy_triton

    def no_pad_rows(*args: object, **kwargs: object) -> None:
        raise AssertionError("pad_rows called: the padded gradient was copied")

    monkeypatch.setattr(head, "pad_rows", no_pad_rows)
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 16, device=device, requires_grad=True)
    weight = torch.randn(40, 16, device=device, requires_grad=True)  # vocab 37 padded to 40
    targets = torch.randint(0, 37, (6,), device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        logits = head.sliced_head_triton(hidden, weight, 37)
        ref = torch.nn.functional.linear(hidden, weight)[..., :37]
    ours = cross_entropy_triton(logits.flatten(0, 1), targets)
    want = torch.nn.functional.cross_entropy(ref.flatten(0, 1).float(), targets)
    torch.testing.assert_close(ours, want, rtol=1e-4, atol=1e-4)
    got = torch.autograd.grad(ours, (hidden, weight))
    expected = torch.autograd.grad(want, (hidden, weight))
    for a, r in zip(got, expected):
        torch.testing.assert_close(a, r, rtol=2e-2, atol=2e-2)
