"""Triton cross-entropy (kernels/cross_entropy.py) vs ``F.cross_entropy`` on fp32-upcast logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mambabench.kernels import cross_entropy as ce
from mambabench.kernels import cross_entropy_fn
from mambabench.kernels.cross_entropy import cross_entropy_triton

IGNORE = -100


def _case(
    n_tokens: int,
    vocab: int,
    dtype: torch.dtype,
    device: str,
    seed: int = 0,
    scale: float = 3.0,
    pad: int = 0,
    n_ignored: int = 2,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits (n_tokens, vocab) leaf, the padded buffer it views (or itself), targets (n_tokens,))."""
    g = torch.Generator().manual_seed(seed)
    buf = (scale * torch.randn(n_tokens, vocab + pad, generator=g)).to(dtype).to(device)
    logits = buf[:, :vocab] if pad else buf
    targets = torch.randint(0, vocab, (n_tokens,), generator=g)
    targets[0] = vocab - 1  # the last column, in the ragged tail
    targets[1 + torch.randperm(n_tokens - 1, generator=g)[:n_ignored]] = IGNORE
    return logits, buf, targets.to(device)


def _check(
    logits: torch.Tensor,
    targets: torch.Tensor,
    reduction: str,
    dloss: torch.Tensor | None = None,
    rtol: float = 1e-5,
    atol: float = 1e-5,
) -> None:
    """Loss and logits gradient of cross_entropy_triton vs F.cross_entropy(logits.float())."""
    ours_in = logits.detach().requires_grad_()
    ref_in = logits.detach().cpu().requires_grad_()
    ours = cross_entropy_triton(ours_in, targets, IGNORE, reduction)
    ref = F.cross_entropy(ref_in.float(), targets.cpu(), ignore_index=IGNORE, reduction=reduction)
    assert ours.dtype == torch.float32 and ours.shape == ref.shape
    torch.testing.assert_close(ours.cpu(), ref, rtol=rtol, atol=atol)
    if dloss is None:
        dloss = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1))
    (grad,) = torch.autograd.grad(ours, ours_in, dloss.to(ours.device))
    (ref_grad,) = torch.autograd.grad(ref, ref_in, dloss)
    assert grad.dtype == logits.dtype and grad.shape == logits.shape
    tol = 1e-2 if logits.dtype != torch.float32 else 1e-5  # bf16 gradient: one rounding of the fp32 value
    torch.testing.assert_close(grad.cpu().float(), ref_grad.float(), rtol=tol, atol=tol * 1e-2)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("vocab", "block"), [(1000, 256), (1000, None), (50277, None)])
def test_matches_torch(
    device: str,
    monkeypatch: pytest.MonkeyPatch,
    reduction: str,
    dtype: torch.dtype,
    vocab: int,
    block: int | None,
) -> None:
    """Vocab not a multiple of the block: several loop steps / backward programs with a ragged tail
    (block 256) and the GPU defaults (8192 / 4096: 1 block at vocab 1000, 7 / 13 at 50277)."""
    if block is not None:
        monkeypatch.setattr(ce, "FWD_BLOCK", block)
        monkeypatch.setattr(ce, "BWD_BLOCK", block)
    logits, _, targets = _case(7, vocab, dtype, device)
    _check(logits, targets, reduction)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_padded_column_view_read_in_place(
    device: str, monkeypatch: pytest.MonkeyPatch, dtype: torch.dtype
) -> None:
    """The head's logits: a [:, :vocab] view of a (tokens, vocab + 3) buffer (row stride > vocab). The
    kernel reads it without a copy: a pad column set to +inf would turn any read of it into NaN/inf."""
    monkeypatch.setattr(ce, "FWD_BLOCK", 128)
    monkeypatch.setattr(ce, "BWD_BLOCK", 128)
    logits, buf, targets = _case(7, 333, dtype, device, pad=3)
    assert logits.stride() == (336, 1) and not logits.is_contiguous()
    buf[:, 333:] = float("inf")
    seen = []
    original = ce.CrossEntropyTriton.forward
    monkeypatch.setattr(
        ce.CrossEntropyTriton,
        "forward",
        staticmethod(lambda ctx, x, *a: seen.append(x.data_ptr()) or original(ctx, x, *a)),
    )
    for reduction in ("sum", "none"):
        _check(logits, targets, reduction)
    assert seen == [buf.data_ptr()] * 2  # the view itself reached the kernel, not a contiguous copy


def test_padded_view_gets_its_gradient_in_the_padded_layout(
    device: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gradient of a [:, :vocab] view of a slightly wider buffer is the same view of a marked
    gradient buffer of that width, with zeros in the pad columns (the head then uses it as is); a view
    of a much wider buffer still gets a contiguous gradient."""
    monkeypatch.setattr(ce, "BWD_BLOCK", 128)
    logits, _, targets = _case(7, 333, torch.bfloat16, device, pad=3)
    x = logits.detach().requires_grad_()
    (grad,) = torch.autograd.grad(cross_entropy_triton(x, targets, IGNORE, "sum"), x)
    full = ce.zero_padded_base(grad, 336)
    assert full is not None and grad.stride() == (336, 1)
    assert torch.count_nonzero(full[:, 333:]) == 0 and torch.count_nonzero(grad) > 0
    assert ce.zero_padded_base(grad, 340) is None and ce.zero_padded_base(full[:, :333].clone(), 336) is None
    wide, _, targets = _case(7, 100, torch.bfloat16, device, pad=ce.MAX_PAD_COLS + 1)
    x = wide.detach().requires_grad_()
    (grad,) = torch.autograd.grad(cross_entropy_triton(x, targets, IGNORE, "sum"), x)
    assert grad.is_contiguous() and grad._base is None


def test_ignored_targets(device: str) -> None:
    """Ignored rows: 0 loss and 0 gradient; all ignored: sum 0 with a zero gradient (what the LM task
    uses: it divides the sum by count.clamp(min=1)), mean NaN as in PyTorch."""
    logits, _, targets = _case(7, 100, torch.float32, device, n_ignored=3)
    _check(logits, targets, "none")
    x = logits.detach().requires_grad_()
    per_row = cross_entropy_triton(x, targets, IGNORE, "none")
    ignored = targets == IGNORE
    assert int(ignored.sum()) == 3 and bool((per_row[ignored] == 0).all())
    (grad,) = torch.autograd.grad(per_row.sum(), x)
    assert bool((grad[ignored] == 0).all())

    all_ignored = torch.full_like(targets, IGNORE)
    _check(logits, all_ignored, "sum")
    x = logits.detach().requires_grad_()
    total = cross_entropy_triton(x, all_ignored, IGNORE, "sum")
    assert float(total.detach()) == 0.0
    (grad,) = torch.autograd.grad(total, x)
    assert bool((grad == 0).all())
    mean = cross_entropy_triton(logits, all_ignored, IGNORE, "mean")
    ref = F.cross_entropy(logits.cpu(), all_ignored.cpu(), ignore_index=IGNORE)
    assert torch.isnan(mean) and torch.isnan(ref)

    other = torch.where(targets == IGNORE, 7, targets)  # another ignore_index
    total = cross_entropy_triton(logits, other, ignore_index=7, reduction="sum")
    ref = F.cross_entropy(logits.cpu(), other.cpu(), ignore_index=7, reduction="sum")
    torch.testing.assert_close(total.cpu(), ref)


def test_extreme_logits_stay_finite(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """fp32 logits of magnitude 1e4 (one exp would overflow): finite loss and gradient equal to torch's."""
    monkeypatch.setattr(ce, "FWD_BLOCK", 64)
    monkeypatch.setattr(ce, "BWD_BLOCK", 64)
    logits, _, targets = _case(7, 300, torch.float32, device, scale=1.0)
    logits = logits.sign() * 1e4 + logits  # +-1e4 with small differences; ties across blocks
    logits[1, 250] = 2e4  # the max in the last (ragged) block, after the running max was set
    logits[2] = -1e4  # a constant row: uniform softmax
    for reduction in ("none", "sum", "mean"):
        out = cross_entropy_triton(logits, targets, IGNORE, reduction)
        assert bool(torch.isfinite(out).all())
        _check(logits, targets, reduction, atol=2e-3, rtol=1e-5)  # loss ~1e4 at fp32 resolution


def test_bad_inputs_raise(device: str) -> None:
    """Clear errors; out-of-range targets are checked for CPU tensors (a CUDA check would synchronise)."""
    logits, _, targets = _case(7, 50, torch.float32, device)
    if device == "cpu":
        bad = targets.clone()
        bad[3] = 50
        with pytest.raises(ValueError, match="out of range"):
            cross_entropy_triton(logits, bad)
        bad[3] = -1
        with pytest.raises(ValueError, match="out of range"):
            cross_entropy_triton(logits, bad)
    with pytest.raises(ValueError, match="2-D"):
        cross_entropy_triton(logits.view(1, 7, 50), targets.view(1, 7))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy_triton(logits, targets, reduction="batchmean")
    with pytest.raises(ValueError, match="targets"):
        cross_entropy_triton(logits, targets[:3])


def test_bad_target_gives_nan_rows_in_kernel(device: str) -> None:
    """What a CUDA run sees for an out-of-range target (no synchronising check there): that row's loss
    and gradient are NaN, every other row is exact, and nothing is read out of bounds."""
    logits, _, targets = _case(7, 50, torch.float32, device)
    bad = targets.clone()
    bad[3] = 10**9
    x = logits.detach().requires_grad_()
    per_row = ce.CrossEntropyTriton.apply(x, bad, IGNORE)
    (grad,) = torch.autograd.grad(per_row.sum(), x)
    ref = F.cross_entropy(logits.cpu(), targets.cpu(), ignore_index=IGNORE, reduction="none")
    assert torch.isnan(per_row[3]) and bool(torch.isnan(grad[3]).all())
    keep = torch.arange(7) != 3
    torch.testing.assert_close(per_row.cpu()[keep], ref[keep])
    assert bool(torch.isfinite(grad.cpu()[keep]).all())


def test_dispatch(device: str) -> None:
    """cross_entropy_fn: reference = F.cross_entropy(logits.float()); triton = the kernel; auto = the
    kernel only for CUDA tensors; unknown backends are refused."""
    logits, _, targets = _case(7, 40, torch.bfloat16, device)
    ref = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE)
    torch.testing.assert_close(cross_entropy_fn(logits, targets, backend="reference"), ref)
    torch.testing.assert_close(cross_entropy_fn(logits, targets, backend="triton"), ref)
    torch.testing.assert_close(cross_entropy_fn(logits, targets, backend="auto"), ref)
    with pytest.raises(ValueError, match="auto, triton, reference"):
        cross_entropy_fn(logits, targets, backend="chunked")


def test_lm_task_loss_triton_equals_reference(device: str) -> None:
    """LanguageModelingTask(loss_backend=triton) vs reference on the same network and batch (with
    ignored targets): same loss and same parameter gradients, bf16 autocast logits."""
    from functools import partial

    from mambabench.models import LMHeadModel
    from mambabench.models.mixers.mamba import Mamba
    from mambabench.tasks import LanguageModelingTask

    torch.manual_seed(0)
    mixer = partial(Mamba, d_state=4, dt_rank=2, scan_backend="reference")
    net = LMHeadModel(50, 16, 1, mixer).to(device)
    ids = torch.randint(0, 50, (2, 9), device=device)
    targets = torch.randint(0, 50, (2, 9), device=device)
    targets[0, :4] = IGNORE
    batch = {"input_ids": ids, "targets": targets}
    results = []
    for backend in ("reference", "triton"):
        task = LanguageModelingTask(net, optimizer=partial(torch.optim.AdamW), loss_backend=backend)
        net.zero_grad()
        with torch.autocast(device, dtype=torch.bfloat16):
            values = task.compute(batch)
        values["loss"][0].backward()
        results.append((values, [p.grad.clone() for p in net.parameters()]))
    (ref, ref_grads), (ours, grads) = results
    torch.testing.assert_close(ours["loss"][0], ref["loss"][0], rtol=1e-5, atol=1e-5)
    assert ours["loss"][1] == ref["loss"][1] == 14
    torch.testing.assert_close(ours["accuracy"][0], ref["accuracy"][0])
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=2e-2, atol=2e-3)
    with pytest.raises(ValueError, match="loss_backend"):
        LanguageModelingTask(net, optimizer=partial(torch.optim.AdamW), loss_backend="chunked")
