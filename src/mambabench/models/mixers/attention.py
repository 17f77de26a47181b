"""Causal multi-head self-attention with rotary / xPos / no position encoding and a KV cache.

Used by Transformer++ (RoPE, no biases), the GPT-3 Transformer (learned absolute positions added in
the backbone, biases), the synthetic-task baselines MHA-Abs / MHA-RoPE / MHA-xPos (paper §4.1.2) and
the attention layers of hybrids. Training uses ``F.scaled_dot_product_attention`` (FlashAttention on
GPU); decoding appends keys and values to a cache and attends one query to all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POSITION_ENCODINGS = ("rope", "xpos", "none")


@dataclass
class AttentionCache:
    """Keys and values seen so far: each (batch, n_heads, seqlen_so_far, head_dim); None before prefill."""

    key: Tensor | None = None
    value: Tensor | None = None
    batch_size: int = 0
    dtype: torch.dtype = torch.float32
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def seqlen(self) -> int:
        return 0 if self.key is None else self.key.shape[2]

    def append(self, key: Tensor, value: Tensor) -> tuple[Tensor, Tensor]:
        """Add (batch, heads, new, head_dim) keys/values; returns all keys/values so far."""
        if self.key is None:
            self.key, self.value = key, value
        else:
            self.key = torch.cat([self.key, key], dim=2)
            self.value = torch.cat([self.value, value], dim=2)
        return self.key, self.value


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al.), optionally with the xPos decay (Sun et al. 2022).

    Rotates pairs (x[i], x[i + d/2]) of each head by angle pos * base^(-2i/d). With xPos the query is
    further multiplied by zeta_i^(pos/scale_base) and the key by zeta_i^(-pos/scale_base), with
    zeta_i = (2i/d + gamma) / (1 + gamma), so q.k decays with the distance pos_q - pos_k.
    Positions are absolute (0 = first token), so cached decoding sees the same numbers as the
    parallel forward.
    """

    def __init__(
        self,
        head_dim: int,
        base: float = 10000.0,
        xpos: bool = False,
        xpos_gamma: float = 0.4,
        xpos_scale_base: float = 512.0,
    ) -> None:
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head_dim, got {head_dim}")
        self.head_dim = head_dim
        self.xpos = xpos
        self.xpos_scale_base = xpos_scale_base
        half = head_dim // 2
        self.register_buffer(
            "inv_freq", base ** (-torch.arange(half, dtype=torch.float32) / half), persistent=False
        )
        zeta = (torch.arange(half, dtype=torch.float32) / half + xpos_gamma) / (1 + xpos_gamma)
        self.register_buffer("zeta", zeta, persistent=False)

    def _rotate(self, x: Tensor, angles: Tensor, scale: Tensor | None) -> Tensor:
        x1, x2 = x.float().chunk(2, dim=-1)
        cos, sin = angles.cos(), angles.sin()
        if scale is not None:
            cos, sin = cos * scale, sin * scale
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)

    def forward(self, q: Tensor, k: Tensor, offset: int = 0) -> tuple[Tensor, Tensor]:
        """q, k: (batch, heads, seqlen, head_dim) at positions offset..offset+seqlen-1 -> rotated q, k."""
        pos = torch.arange(offset, offset + q.shape[2], device=q.device, dtype=torch.float32)
        angles = pos[:, None] * self.inv_freq.to(q.device)  # (seqlen, head_dim / 2)
        if not self.xpos:
            return self._rotate(q, angles, None), self._rotate(k, angles, None)
        power = (pos / self.xpos_scale_base)[:, None]
        scale = self.zeta.to(q.device) ** power
        return self._rotate(q, angles, scale), self._rotate(k, angles, 1.0 / scale)


class MHA(nn.Module):
    """Causal multi-head attention: Wqkv -> (rotary) -> softmax(q k^T / sqrt(d_head)) v -> out_proj.

    Args:
        d_model: width D.
        n_heads: number of heads; head_dim = D / n_heads unless ``head_dim`` is given.
        head_dim: optional explicit head size (Table 12: 64, 64, 96, 64).
        pos_encoding: "rope", "xpos" or "none" (absolute positions, if any, live in the backbone).
        rotary_base: RoPE base (10000).
        xpos_gamma, xpos_scale_base: xPos constants (0.4, 512).
        bias: biases on the projections (GPT-3: True; Transformer++: False).
        dropout: attention dropout (0 in the paper).
        layer_idx: position in the stack.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int = 8,
        head_dim: int | None = None,
        pos_encoding: str = "rope",
        rotary_base: float = 10000.0,
        xpos_gamma: float = 0.4,
        xpos_scale_base: float = 512.0,
        bias: bool = False,
        dropout: float = 0.0,
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        if pos_encoding not in POSITION_ENCODINGS:
            raise ValueError(f"pos_encoding must be one of {POSITION_ENCODINGS}, got {pos_encoding!r}")
        if head_dim is None:
            if d_model % n_heads:
                raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}; set head_dim")
            head_dim = d_model // n_heads
        self.d_model, self.n_heads, self.head_dim = d_model, n_heads, head_dim
        self.pos_encoding = pos_encoding
        self.dropout = dropout
        self.layer_idx = layer_idx
        inner = n_heads * head_dim
        self.Wqkv = nn.Linear(d_model, 3 * inner, bias=bias)
        self.out_proj = nn.Linear(inner, d_model, bias=bias)
        self.rotary = (
            RotaryEmbedding(head_dim, rotary_base, pos_encoding == "xpos", xpos_gamma, xpos_scale_base)
            if pos_encoding != "none"
            else None
        )

    def _qkv(self, hidden: Tensor, offset: int) -> tuple[Tensor, Tensor, Tensor]:
        """hidden (batch, seqlen, D) -> q, k, v each (batch, heads, seqlen, head_dim), rotated."""
        q, k, v = self.Wqkv(hidden).unflatten(-1, (3, self.n_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        if self.rotary is not None:
            q, k = self.rotary(q, k, offset)
        return q, k, v

    def forward(self, hidden: Tensor, cache: AttentionCache | None = None) -> Tensor:
        """hidden: (batch, seqlen, d_model) -> (batch, seqlen, d_model); with ``cache`` keys/values are kept."""
        offset = cache.seqlen if cache is not None else 0
        q, k, v = self._qkv(hidden, offset)
        if cache is not None:
            k_all, v_all = cache.append(k, v)
            if offset:  # prefill after earlier tokens: explicit mask of the new block against everything
                mask = torch.ones(q.shape[2], k_all.shape[2], dtype=torch.bool, device=q.device).tril(offset)
                y = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
                return self.out_proj(y.transpose(1, 2).flatten(2))
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0
        )
        return self.out_proj(y.transpose(1, 2).flatten(2))

    def step(self, hidden: Tensor, cache: AttentionCache) -> Tensor:
        """One token: hidden (batch, d_model) -> (batch, d_model); attends to all cached positions."""
        q, k, v = self._qkv(hidden[:, None], cache.seqlen)
        k_all, v_all = cache.append(k, v)
        y = F.scaled_dot_product_attention(q, k_all, v_all)
        return self.out_proj(y.transpose(1, 2).flatten(2)).squeeze(1)

    def allocate_cache(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> AttentionCache:
        """An empty KV cache (grows as tokens arrive)."""
        return AttentionCache(batch_size=batch_size, dtype=dtype, device=device)
