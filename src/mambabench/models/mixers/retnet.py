"""RetNet multi-scale retention (Sun et al. 2023): parallel form for training, recurrent for decoding.

Per head h with decay gamma_h = 1 - 2^(-5 - h) (heads spread over 0..n_heads-1 as in RetNet),
rotary-rotated q and k (k scaled by d_k^-1/2)::

    parallel:   Y = (Q K^T ⊙ D) V,  D_nm = gamma^(n-m) for n >= m, else 0
    recurrent:  S_n = gamma S_{n-1} + k_n^T v_n,  y_n = q_n S_n

then a per-head GroupNorm, the swish gate and out_proj: out = W_o(swish(X W_g) ⊙ GN(Y)).
The recurrent form is the selective scan with state size d_k: channels are the value dims of all
heads, B_t = k_t and C_t = q_t grouped per head, delta = 1 and A = log gamma, so decoding and
prefill go through the shared scan dispatch point. (RetNet's extra score normalisations are omitted;
the GroupNorm makes the output invariant to the per-head scale they correct.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambabench.kernels import selective_scan_fn, selective_state_update
from mambabench.models.mixers.attention import RotaryEmbedding


@dataclass
class RetentionCache:
    """state: (batch, n_heads * v_head_dim, k_head_dim) fp32 retention state S; offset: tokens seen,
    a () int64 device tensor (so that a CUDA graph can replay the step)."""

    state: Tensor
    offset: Tensor


class MultiScaleRetention(nn.Module):
    """Multi-scale retention mixer.

    Args:
        d_model: width D.
        n_heads: heads (RetNet uses head size 256 for k at scale; any divisor of D here).
        v_expand: value width / D (2 in RetNet, so that the layer has 8 D^2 parameters with the gate).
        rotary_base: base of the rotary (xPos-style relative) position encoding.
        bias: biases on the projections (improved recipe: False).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int = 4,
        v_expand: int = 2,
        rotary_base: float = 10000.0,
        bias: bool = False,
        scan_backend: str = "auto",
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.layer_idx = d_model, n_heads, layer_idx
        self.k_dim = d_model // n_heads
        self.v_dim = v_expand * d_model // n_heads
        self.scan_backend = scan_backend
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, v_expand * d_model, bias=bias)
        self.g_proj = nn.Linear(d_model, v_expand * d_model, bias=bias)
        self.out_proj = nn.Linear(v_expand * d_model, d_model, bias=bias)
        self.group_norm = nn.GroupNorm(n_heads, v_expand * d_model, affine=False, eps=1e-6)
        self.rotary = RotaryEmbedding(self.k_dim, rotary_base)
        gammas = 1 - 2.0 ** (-5 - torch.arange(n_heads, dtype=torch.float32))
        self.register_buffer("log_gamma", torch.log(gammas), persistent=False)

    def _qkv(self, hidden: Tensor, offset: Tensor | int) -> tuple[Tensor, Tensor, Tensor]:
        """(batch, seqlen, D) -> q, k (batch, heads, seqlen, k_dim) rotated, v (batch, heads, seqlen, v_dim).

        ``offset``: position of the first token, an int or a () device tensor (decoding)."""
        q = self.q_proj(hidden).unflatten(-1, (self.n_heads, self.k_dim)).transpose(1, 2)
        k = self.k_proj(hidden).unflatten(-1, (self.n_heads, self.k_dim)).transpose(1, 2) * self.k_dim**-0.5
        v = self.v_proj(hidden).unflatten(-1, (self.n_heads, self.v_dim)).transpose(1, 2)
        q, k = self.rotary(q, k, offset)  # a device-tensor offset needs no host read (graph-capturable)
        return q, k, v

    def _finish(self, hidden: Tensor, y: Tensor) -> Tensor:
        """y: (batch, seqlen, heads * v_dim) -> GroupNorm, swish gate, out_proj."""
        shape = y.shape
        y = self.group_norm(y.reshape(-1, shape[-1]).float()).reshape(shape).to(hidden.dtype)
        return self.out_proj(F.silu(self.g_proj(hidden)) * y)

    def _decay_matrix(self) -> Tensor:
        """A of the scan (heads * v_dim, k_dim): log gamma of each value channel's head."""
        return self.log_gamma.repeat_interleave(self.v_dim)[:, None].expand(-1, self.k_dim).contiguous()

    def forward(self, hidden: Tensor, cache: RetentionCache | None = None) -> Tensor:
        """hidden: (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""
        batch, seqlen, _ = hidden.shape
        q, k, v = self._qkv(hidden, cache.offset if cache is not None else 0)
        if cache is not None:  # recurrent form through the scan; keeps the final state
            u = v.transpose(2, 3).flatten(1, 2).float()  # (batch, heads * v_dim, seqlen)
            out, last = selective_scan_fn(
                u,
                torch.ones_like(u),
                self._decay_matrix(),
                k.transpose(2, 3).float().contiguous(),
                q.transpose(2, 3).float().contiguous(),
                return_last_state=True,
                backend=self.scan_backend,
            )
            cache.state.copy_(last)
            cache.offset.add_(seqlen)
            return self._finish(hidden, out.transpose(1, 2).to(hidden.dtype))
        pos = torch.arange(seqlen, device=hidden.device, dtype=torch.float32)
        dist = pos[:, None] - pos[None]
        decay = torch.where(dist >= 0, torch.exp(self.log_gamma[:, None, None] * dist.clamp_min(0)), 0.0)
        scores = torch.einsum("bhtd,bhsd->bhts", q.float(), k.float()) * decay
        y = torch.einsum("bhts,bhsd->bhtd", scores, v.float()).to(hidden.dtype)
        return self._finish(hidden, y.transpose(1, 2).flatten(2))

    def step(self, hidden: Tensor, cache: RetentionCache) -> Tensor:
        """hidden: (batch, d_model) -> (batch, d_model)."""
        q, k, v = self._qkv(hidden[:, None], cache.offset)
        cache.offset.add_(1)
        x = v[:, :, 0].flatten(1).float()  # (batch, heads * v_dim)
        y = selective_state_update(
            cache.state,
            x,
            torch.ones_like(x),
            self._decay_matrix(),
            k[:, :, 0].float(),
            q[:, :, 0].float(),
            backend=self.scan_backend,
        )
        return self._finish(hidden[:, None], y[:, None].to(hidden.dtype))[:, 0]

    def allocate_cache(
        self, batch_size: int, dtype: torch.dtype, device: torch.device, max_seqlen: int | None = None
    ) -> RetentionCache:
        """Zero state (its size does not depend on ``max_seqlen``)."""
        return RetentionCache(
            torch.zeros(batch_size, self.n_heads * self.v_dim, self.k_dim, device=device),
            torch.zeros((), dtype=torch.long, device=device),
        )
