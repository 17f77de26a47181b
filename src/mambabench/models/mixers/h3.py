"""H3 (Fu et al. 2023): shift SSM on the keys, diagonal SSM on k⊗v, multiplicative gating by q.

hidden -> q, k, v projections -> k through the shift SSM (a learned causal FIR of width
``shift_d_state``: with a shift matrix A and B = e_1 the SSM kernel is C itself) -> per head the
outer product k v^T (head_dim^2 channels) -> the inner layer (diagonal SSM by default; swappable for
Table 6: S4D complex/real, Hyena, S6) -> contracted with q -> out_proj. With head_dim = 1 this is the
H3 of the synthetic tasks; H3++ of the scaling laws uses head_dim = 8 (linear-attention heads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mambabench.kernels import causal_conv1d_fn, causal_conv1d_update
from mambabench.models.mixers.inner import make_inner


@dataclass
class H3Cache:
    """shift_state: (batch, d_model, shift_d_state) last keys; inner: the inner layer's cache."""

    shift_state: Tensor
    inner: Any


class H3(nn.Module):
    """H3 mixer.

    Args:
        d_model: width D (= n_heads * head_dim).
        d_state: state size of the diagonal SSM (64 in H3).
        shift_d_state: width of the shift SSM (64 in H3).
        head_dim: linear-attention head size (1: H3; 8: H3++).
        inner_layer: "s4_complex" (H3), "s4_real", "hyena" or "s6" (needs head_dim = 1).
        dt_min, dt_max: step-size range of the SSM inner layers.
        hyena: keyword arguments of the Hyena inner layer (emb_dim, filter_order, l_max, ...).
        bias: biases on the projections (H3: True; H3++'s improved recipe: False).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 64,
        shift_d_state: int = 64,
        head_dim: int = 1,
        inner_layer: str = "s4_complex",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        hyena: dict[str, Any] | None = None,
        bias: bool = True,
        scan_backend: str = "auto",
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        if d_model % head_dim:
            raise ValueError(f"d_model={d_model} is not divisible by head_dim={head_dim}")
        self.d_model, self.head_dim, self.n_heads = d_model, head_dim, d_model // head_dim
        self.shift_d_state, self.scan_backend, self.layer_idx = shift_d_state, scan_backend, layer_idx
        self.inner_layer = inner_layer
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.shift_kernel = nn.Parameter(torch.randn(d_model, shift_d_state) / shift_d_state**0.5)
        self.inner = make_inner(
            inner_layer,
            self.n_heads * head_dim**2,
            d_state,
            repeat=head_dim**2,
            dt_min=dt_min,
            dt_max=dt_max,
            scan_backend=scan_backend,
            hyena=hyena,
        )
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def _outer(self, k: Tensor, v: Tensor) -> Tensor:
        """k, v: (batch, D, *t) -> k v^T per head, (batch, heads * head_dim^2, *t)."""
        if self.head_dim == 1:
            return k * v
        hd = self.head_dim
        k = k.unflatten(1, (self.n_heads, hd, 1))
        v = v.unflatten(1, (self.n_heads, 1, hd))
        return (k * v).flatten(1, 3)

    def _contract(self, q: Tensor, kv: Tensor) -> Tensor:
        """q: (batch, D, *t), kv: (batch, heads * hd^2, *t) -> y_j = sum_i q_i kv_ij, (batch, D, *t)."""
        if self.head_dim == 1:
            return q * kv
        hd = self.head_dim
        kv = kv.unflatten(1, (self.n_heads, hd, hd))
        q = q.unflatten(1, (self.n_heads, hd, 1))
        return (q * kv).sum(2).flatten(1, 2)

    def forward(self, hidden: Tensor, cache: H3Cache | None = None) -> Tensor:
        """hidden: (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""
        q, k, v = (proj(hidden).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj))
        if cache is not None:
            width = self.shift_d_state
            cache.shift_state.copy_(torch.nn.functional.pad(k, (width - k.shape[-1], 0))[..., -width:])
        k = causal_conv1d_fn(k, self.shift_kernel, None, backend=self.scan_backend)
        kv = self.inner(self._outer(k, v), cache=None if cache is None else cache.inner)
        return self.out_proj(self._contract(q, kv).transpose(1, 2))

    def step(self, hidden: Tensor, cache: H3Cache) -> Tensor:
        """hidden: (batch, d_model) -> (batch, d_model)."""
        q, k, v = self.q_proj(hidden), self.k_proj(hidden), self.v_proj(hidden)
        k = causal_conv1d_update(k, cache.shift_state, self.shift_kernel, None)
        kv = self.inner.step(self._outer(k, v), cache.inner)
        return self.out_proj(self._contract(q, kv))

    def allocate_cache(
        self, batch_size: int, dtype: torch.dtype, device: torch.device, max_seqlen: int | None = None
    ) -> H3Cache:
        """Zero state; ``max_seqlen`` sizes a long-convolution inner layer's history."""
        return H3Cache(
            shift_state=torch.zeros(batch_size, self.d_model, self.shift_d_state, dtype=dtype, device=device),
            inner=self.inner.allocate_cache(batch_size, dtype, device, max_seqlen=max_seqlen),
        )
