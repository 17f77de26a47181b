"""The fused Mamba block path on the Triton scan and conv (interpreter on CPU, compiled with
MAMBABENCH_KERNEL_DEVICE=cuda): same gradients as the unfused mixer, and the scan's u and delta are not kept."""

from __future__ import annotations

import copy

import pytest
import torch

import mambabench.models.mixers.mamba_fused as mamba_inner
from mambabench.models.mixers import Mamba


def _pair(device: str, **kw) -> tuple[Mamba, Mamba]:
    torch.manual_seed(0)
    unfused = Mamba(16, d_state=4, dt_rank=2, scan_backend="triton", **kw).to(device)
    fused = copy.deepcopy(unfused)
    fused.fused = True
    return unfused, fused


def test_fused_matches_unfused_on_triton(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    unfused, fused = _pair(device, bias=True)
    packed: list[str] = []
    pack = mamba_inner._Recompute.pack

    def counting_pack(self: mamba_inner._Recompute, t: torch.Tensor) -> tuple:
        result = pack(self, t)
        packed.append(result[0])
        return result

    monkeypatch.setattr(mamba_inner._Recompute, "pack", counting_pack)
    hidden = torch.randn(2, 24, 16, device=device)
    grad = torch.randn(2, 24, 16, device=device)
    results = []
    for mixer in (unfused, fused):
        h = hidden.clone().requires_grad_()
        out = mixer(h)
        out.backward(grad)
        results.append((out.detach(), h.grad, [p.grad for p in mixer.parameters()]))
    (out_u, dh_u, g_u), (out_f, dh_f, g_f) = results
    torch.testing.assert_close(out_f, out_u, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dh_f, dh_u, rtol=1e-4, atol=1e-5)
    for a, b in zip(g_f, g_u):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert packed.count(mamba_inner.DROPPED) == 2  # SelectiveScanTriton's u and delta were dropped


@pytest.mark.skipif(not torch.cuda.is_available(), reason="measures CUDA memory")
def test_fused_keeps_less_cuda_memory(device: str) -> None:
    """bf16 autocast, 130M widths: memory held between forward and backward, fused < 0.8 x unfused."""
    if device != "cuda":
        pytest.skip("MAMBABENCH_KERNEL_DEVICE=cuda only")
    torch.manual_seed(0)
    unfused = Mamba(768, scan_backend="triton").cuda()
    fused = copy.deepcopy(unfused)
    fused.fused = True
    hidden = torch.randn(4, 2048, 768, device="cuda", requires_grad=True)
    held = []
    for mixer in (unfused, fused, unfused, fused):  # the first two warm up (cuBLAS workspace, Triton)
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = mixer(hidden)
        held.append(torch.cuda.memory_allocated() - before - out.numel() * out.element_size())
        out.float().sum().backward()
        del out
    assert held[3] < 0.8 * held[2], held


def test_scan_writes_dz_into_dxz(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """On the Triton scan the fused backward hands the z half of d(xz) to the scan (``dz_out``): dz is
    written there in place, so the backward makes no copy of it, and the gradients are unchanged."""
    from mambabench.kernels import selective_scan as ss

    seen: list[bool] = []
    backward = ss.selective_scan_backward

    def spying_backward(*args, dz_out=None, **kw):  # noqa: ANN002, ANN003, ANN202
        seen.append(dz_out is not None)
        du, ddelta, dA, dB, dC, dD, dbias, dz = backward(*args, dz_out=dz_out, **kw)
        if dz_out is not None:
            assert dz.data_ptr() == dz_out.data_ptr()
        return du, ddelta, dA, dB, dC, dD, dbias, dz

    monkeypatch.setattr(ss, "selective_scan_backward", spying_backward)
    unfused, fused = _pair(device)
    hidden = torch.randn(2, 20, 16, device=device)
    grads = []
    for mixer in (unfused, fused):
        h = hidden.clone().requires_grad_()
        mixer(h).sum().backward()
        grads.append([h.grad, *(p.grad for p in mixer.parameters())])
    assert seen == [False, True]  # the unfused mixer's scan allocates dz; the fused one writes into dxz
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
