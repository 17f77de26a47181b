"""Causal multi-head self-attention with rotary / xPos / no position encoding and a KV cache.

Used by Transformer++ (RoPE, no biases), the GPT-3 Transformer (learned absolute positions added in
the backbone, biases), the synthetic-task baselines MHA-Abs / MHA-RoPE / MHA-xPos (paper §4.1.2) and
the attention layers of hybrids. Training uses ``F.scaled_dot_product_attention`` (FlashAttention on
GPU). Decoding writes keys and values into preallocated buffers (:class:`AttentionCache`) and attends
one query to them, with every position read from a device counter so the step can be CUDA-graph
captured; the prompt is prefilled through the same flash/efficient SDPA kernels as training. On a GPU
the step's rotary, cache write and attention are one Triton kernel (split-K flash decoding, see
:mod:`mambabench.kernels.decode_attention`).
"""

from __future__ import annotations

import importlib
import math
import os
from dataclasses import dataclass, field
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention.bias import causal_lower_right

POSITION_ENCODINGS = ("rope", "xpos", "none")
DECODE_BACKENDS = ("auto", "triton", "torch")
# xPos scales of one attention call stay within 2^-XPOS_SCALE_BITS .. 2^XPOS_SCALE_BITS
XPOS_SCALE_BITS = 16


def _xpos_room_bits(dtype: torch.dtype) -> float:
    """log2 of ``dtype``'s largest value, less 2^8 of headroom for |q| and |k| themselves."""
    return math.log2(torch.finfo(dtype).max) - 8


def _decode_kernel_module() -> ModuleType | None:
    """``mambabench.kernels.decode_attention`` if Triton is installed, else None."""
    try:
        return importlib.import_module("mambabench.kernels.decode_attention")
    except ImportError:
        return None


def _capturing() -> bool:
    """True while a CUDA graph is being captured on the current stream (host syncs are not allowed)."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


@dataclass
class AttentionCache:
    """Keys and values of the tokens seen so far, in buffers that decoding updates in place.

    ``key``, ``value``: (batch, n_heads, capacity, head_dim); positions ``0 .. seqlen - 1`` are filled.
    ``seqlen``: () int64 tensor on the buffers' device, the number of tokens written so far. The one-token
    :meth:`MHA.step` reads the write position, the rotary positions and the attention mask from it and
    advances it in place, so a CUDA graph captured once replays correctly at every position.
    ``max_seqlen``: the most tokens the buffers hold (capacity is rounded up to a multiple of 16 so the
    mask rows stay aligned); None makes the buffers grow as tokens arrive (CPU and eager use only).
    ``host_seqlen``: a host copy of ``seqlen`` while it is known, so eager prefills and steps check for
    overflow without waiting for the GPU; None after a step inside a CUDA graph capture (then read once
    from the device when needed).
    """

    key: Tensor
    value: Tensor
    seqlen: Tensor
    max_seqlen: int | None = None
    host_seqlen: int | None = 0
    positions: Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.positions = torch.arange(self.capacity, device=self.key.device)

    @classmethod
    def allocate(
        cls,
        batch_size: int,
        n_heads: int,
        head_dim: int,
        dtype: torch.dtype,
        device: torch.device | str,
        max_seqlen: int | None = None,
    ) -> AttentionCache:
        """Empty buffers for ``max_seqlen`` tokens (rounded up to a multiple of 16), or growing ones."""
        if max_seqlen is not None and max_seqlen < 1:
            raise ValueError(f"max_seqlen must be a positive number of tokens, got {max_seqlen}")
        capacity = 0 if max_seqlen is None else -(-max_seqlen // 16) * 16
        shape = (batch_size, n_heads, capacity, head_dim)
        return cls(
            key=torch.zeros(shape, dtype=dtype, device=device),
            value=torch.zeros(shape, dtype=dtype, device=device),
            seqlen=torch.zeros((), dtype=torch.int64, device=device),
            max_seqlen=max_seqlen,
        )

    @property
    def capacity(self) -> int:
        return self.key.shape[2]

    def tokens_so_far(self) -> int:
        """Number of cached tokens as a host int (reads the device counter once after captured steps)."""
        if self.host_seqlen is None:
            self.host_seqlen = int(self.seqlen)
        return self.host_seqlen

    def _make_room(self, needed: int) -> None:
        """Check that ``needed`` tokens fit; growing buffers are enlarged (doubling) instead."""
        if self.max_seqlen is None:
            if needed > self.capacity:
                self._grow(max(needed, 2 * self.capacity, 16))
        elif needed > self.max_seqlen:
            raise ValueError(
                f"attention cache overflow: {needed} tokens do not fit a cache allocated for "
                f"max_seqlen={self.max_seqlen}; allocate the cache with max_seqlen >= prompt length + "
                f"new tokens (model.allocate_cache(batch_size, max_seqlen=...))"
            )

    def _grow(self, capacity: int) -> None:
        if _capturing():
            raise RuntimeError(
                "a growing attention cache cannot be captured in a CUDA graph; allocate it with max_seqlen"
            )
        batch, heads, old, head_dim = self.key.shape
        for name in ("key", "value"):
            buffer = getattr(self, name).new_zeros(batch, heads, capacity, head_dim)
            buffer[:, :, :old] = getattr(self, name)
            setattr(self, name, buffer)
        self.positions = torch.arange(capacity, device=self.key.device)

    def write_block(self, key: Tensor, value: Tensor, start: int) -> tuple[Tensor, Tensor]:
        """Write (batch, heads, n, head_dim) keys/values at positions start..start+n-1 (a prefill) and
        set the counter to start + n; returns views of all cached keys/values (..., start + n, ...)."""
        end = start + key.shape[2]
        self._make_room(end)
        self.key[:, :, start:end] = key
        self.value[:, :, start:end] = value
        self.seqlen.fill_(end)
        self.host_seqlen = end
        return self.key[:, :, :end], self.value[:, :, :end]

    def reserve_token(self) -> None:
        """Make sure one more token fits (clear error, or growth) before it is written at ``seqlen``."""
        if _capturing():
            if self.max_seqlen is None:
                self._grow(0)  # raises: growing buffers cannot be captured
            self.host_seqlen = None  # replays advance the device counter behind the host's back
        else:
            self._make_room(self.tokens_so_far() + 1)

    def write_token(self, key: Tensor, value: Tensor) -> None:
        """Write one token's (batch, heads, 1, head_dim) key/value at position ``seqlen`` (read on the
        device) without advancing the counter (:meth:`advance` does, after attention)."""
        self.reserve_token()
        index = self.seqlen.view(1)
        self.key.index_copy_(2, index, key.to(self.key.dtype))
        self.value.index_copy_(2, index, value.to(self.value.dtype))

    def visible_mask(self) -> Tensor:
        """(1, 1, 1, capacity) bool: True at the positions a new token at ``seqlen`` attends to."""
        return (self.positions <= self.seqlen).view(1, 1, 1, -1)

    def reset(self) -> None:
        """Empty the cache for a new sequence, keeping its buffers (and so any CUDA graph captured on
        them): the counter goes back to 0; stale keys/values beyond it are masked or overwritten."""
        self.seqlen.zero_()
        self.host_seqlen = 0

    def advance(self) -> None:
        """One more token: counter += 1 on the device (and on the host while known)."""
        self.seqlen.add_(1)
        if self.host_seqlen is not None:
            self.host_seqlen += 1


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al.), optionally with the xPos decay (Sun et al. 2022).

    Rotates pairs (x[i], x[i + d/2]) of each head by angle pos * base^(-2i/d). With xPos the query is
    further multiplied by zeta_i^(pos/scale_base) and the key by zeta_i^(-pos/scale_base), with
    zeta_i = (2i/d + gamma) / (1 + gamma), so q.k decays with the distance pos_q - pos_k.
    Positions are absolute (0 = first token), so cached decoding sees the same numbers as the
    parallel forward. The frequency tables stay fp32 when the model is cast to bf16/fp16 (rounded
    frequencies would turn into large angle errors at long positions).

    The xPos scales grow and shrink exponentially with the position (zeta_0 = 0.29: q's scale falls
    below fp32's range, and k's overflows, from about 2^15 tokens on). Only their product
    zeta^((pos_q - pos_k)/scale_base) matters, so the scales can be taken relative to any centre c,
    q * zeta^((pos_q - c)/scale_base) and k * zeta^(-(pos_k - c)/scale_base) (:meth:`xpos_scale`):
    :class:`MHA` attends sequences longer than :meth:`xpos_span` block by block of queries, each
    block centred at its first position, which keeps every scale finite at any length.
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
        self.base, self.xpos_gamma = base, xpos_gamma
        default = torch.empty(0).device  # follows a `with torch.device(...)` around model construction
        inv_freq, zeta = self._tables(default if default.type != "meta" else torch.device("cpu"))
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        self.register_buffer("zeta", zeta, persistent=False)

    def _tables(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """fp32 (head_dim / 2,) rotary frequencies base^(-2i/d) and xPos ratios zeta_i."""
        half = self.head_dim // 2
        i = torch.arange(half, dtype=torch.float32, device=device) / half
        return self.base**-i, (i + self.xpos_gamma) / (1 + self.xpos_gamma)

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 (nn.Module's signature)
        """Follow device moves, but rebuild the tables in fp32 after a dtype cast."""
        super()._apply(fn, recurse)
        if self.inv_freq.dtype != torch.float32 and self.inv_freq.device.type != "meta":
            self.inv_freq, self.zeta = self._tables(self.inv_freq.device)
        return self

    def _rotate(self, x: Tensor, angles: Tensor, scale: Tensor | None) -> Tensor:
        x1, x2 = x.float().chunk(2, dim=-1)
        cos, sin = angles.cos(), angles.sin()
        if scale is not None:
            cos, sin = cos * scale, sin * scale
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)

    def forward(self, q: Tensor, k: Tensor, offset: int | Tensor = 0) -> tuple[Tensor, Tensor]:
        """q, k: (batch, heads, seqlen, head_dim) at positions offset..offset+seqlen-1 -> rotated q, k.

        ``offset`` may be a () integer tensor on q's device (the decode counter): no host sync then."""
        pos = torch.arange(q.shape[2], device=q.device, dtype=torch.float32) + offset
        angles = pos[:, None] * self.inv_freq.to(q.device)  # (seqlen, head_dim / 2)
        if not self.xpos:
            return self._rotate(q, angles, None), self._rotate(k, angles, None)
        scale = self.xpos_scale(pos)
        return self._rotate(q, angles, scale), self._rotate(k, angles, 1.0 / scale)

    def xpos_scale(self, positions: Tensor, centre: float | Tensor = 0.0) -> Tensor:
        """fp32 (len, head_dim / 2) xPos query scales zeta_i^((pos - centre) / scale_base) for fp32
        ``positions`` (len,); the key scales are their inverses. With ``centre`` 0 these are the
        absolute scales of :meth:`forward`."""
        power = ((positions - centre) / self.xpos_scale_base)[:, None]
        return self.zeta.to(positions.device) ** power

    def xpos_block_scales(self, positions: Tensor, start: int, end: int) -> tuple[Tensor, Tensor]:
        """xPos scales for the queries at ``positions[start:end]`` attending to the keys at
        ``positions[:end]``, centred at ``start``: fp32 (end - start, head_dim / 2) query scales
        zeta^((m - start)/scale_base) and (end, head_dim / 2) key scales zeta^(-(n - start)/scale_base).
        Within a block of at most :meth:`xpos_span` queries no scale exceeds 2^16 at any position."""
        return self.xpos_scale(positions[start:end], start), self.xpos_scale(
            positions[:end], start
        ).reciprocal()

    def xpos_span(self, dtype: torch.dtype = torch.float32) -> int:
        """The most positions over which the xPos scales stay within 2^-16 .. 2^16 (fp16: 2^-8 .. 2^8,
        its range is 2^16): a forward over up to this many tokens uses absolute scales (centre 0);
        longer ones are split into query blocks of this size."""
        return max(1, self._xpos_positions(min(XPOS_SCALE_BITS, _xpos_room_bits(dtype))))

    def xpos_cache_limit(self, dtype: torch.dtype) -> int:
        """The most positions whose absolute xPos keys k * zeta^(-pos/scale_base) fit in ``dtype`` (with
        2^8 headroom for |k|): cached keys use absolute scales so that decoding appends without
        rescaling the cache (fp32/bf16: about 34K positions; fp16: about 2.3K)."""
        return self._xpos_positions(_xpos_room_bits(dtype))

    def _xpos_positions(self, bits: float) -> int:
        """The most positions over which the xPos scales change by at most 2^bits: the smallest ratio
        zeta_0 = gamma / (1 + gamma) takes -log2(zeta_0) bits off q's scale per scale_base positions."""
        decay_bits = -math.log2(self.xpos_gamma / (1 + self.xpos_gamma))
        return int(bits * self.xpos_scale_base / decay_bits)

    def rotate_without_xpos(self, x: Tensor) -> Tensor:
        """x (batch, heads, seqlen, head_dim) at positions 0..seqlen-1 -> rotated, fp32, no xPos scale."""
        pos = torch.arange(x.shape[2], device=x.device, dtype=torch.float32)
        return self._rotate(x.float(), pos[:, None] * self.inv_freq.to(x.device), None)


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
        decode_backend: the inference kernels: "triton" (the one-token step as one fused kernel for
            rotary, cache write and split-K attention; the rotary of a prefill or any no-grad forward
            in place in one pass; :mod:`mambabench.kernels.decode_attention`), "torch" (PyTorch rotary,
            SDPA over the cache with a length mask), "auto" (Triton for CUDA tensors when the
            head_dim is a power of two >= 16, else torch). Training always uses the PyTorch rotary.
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
        decode_backend: str = "auto",
    ) -> None:
        super().__init__()
        if pos_encoding not in POSITION_ENCODINGS:
            raise ValueError(f"pos_encoding must be one of {POSITION_ENCODINGS}, got {pos_encoding!r}")
        if decode_backend not in DECODE_BACKENDS:
            raise ValueError(f"decode_backend must be one of {DECODE_BACKENDS}, got {decode_backend!r}")
        self.decode_backend = decode_backend
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

    def _qkv(self, hidden: Tensor, offset: int | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """hidden (batch, seqlen, D) -> q, k, v each (batch, heads, seqlen, head_dim), rotated; one GEMM.

        Without autograd (prefill, evaluation) the rotation runs in place on the GEMM's output in one
        Triton pass when ``decode_backend`` picks the kernels."""
        qkv = self.Wqkv(hidden)
        rotary = self.rotary
        in_place = (
            rotary is not None
            and isinstance(offset, int)
            and not (torch.is_grad_enabled() and qkv.requires_grad)
            and self._decode_with_kernel(qkv)
        )
        if in_place:
            _decode_kernel_module().rotary_qkv_inplace_triton(
                qkv,
                self.n_heads,
                offset,
                rotary.inv_freq,
                rotary.zeta if rotary.xpos else None,
                rotary.xpos_scale_base,
            )
        q, k, v = qkv.unflatten(-1, (3, self.n_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        if rotary is not None and not in_place:
            q, k = rotary(q, k, offset)
        return q, k, v

    def _out(self, y: Tensor) -> Tensor:
        """y (batch, heads, seqlen, head_dim) -> (batch, seqlen, d_model)."""
        return self.out_proj(y.transpose(1, 2).flatten(2))

    def forward(self, hidden: Tensor, cache: AttentionCache | None = None) -> Tensor:
        """hidden: (batch, seqlen, d_model) -> (batch, seqlen, d_model).

        With ``cache`` (a prefill) the block's keys/values are written into the cache after the tokens
        already there and its counter is set; the first block attends causally through SDPA's
        flash/efficient kernels, a later block (chunked prompt) against everything cached so far."""
        if cache is None:
            dropout = self.dropout if self.training else 0.0
            if self._xpos_in_blocks(hidden):
                return self._out(self._xpos_attention_in_blocks(hidden, dropout))
            q, k, v = self._qkv(hidden, 0)
            return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout))
        start = cache.tokens_so_far()
        self._check_xpos_cache(start + hidden.shape[1], cache.key.dtype)
        q, k, v = self._qkv(hidden, start)
        k_all, v_all = cache.write_block(k, v, start)
        if start == 0:
            return self._out(F.scaled_dot_product_attention(q, k, v, is_causal=True))
        mask = torch.ones(q.shape[2], k_all.shape[2], dtype=torch.bool, device=q.device).tril(start)
        y = F.scaled_dot_product_attention(q.to(k_all.dtype), k_all, v_all, attn_mask=mask)
        return self._out(y.to(q.dtype))

    def _attention_dtype(self, hidden: Tensor) -> torch.dtype:
        """The dtype q and k are attended in: autocast's when it is on, else the projection's."""
        if torch.is_autocast_enabled(hidden.device.type):
            return torch.get_autocast_dtype(hidden.device.type)
        return self.Wqkv.weight.dtype

    def _xpos_in_blocks(self, hidden: Tensor) -> bool:
        """Whether a cacheless forward of hidden (batch, seqlen, D) needs re-centred xPos scales."""
        if self.rotary is None or not self.rotary.xpos:
            return False
        return hidden.shape[1] > self.rotary.xpos_span(self._attention_dtype(hidden))

    def _xpos_attention_in_blocks(self, hidden: Tensor, dropout: float) -> Tensor:
        """Causal xPos attention of a sequence longer than its xPos span, with finite scales.

        hidden (batch, seqlen, D) -> y (batch, heads, seqlen, head_dim). Queries go in blocks of
        ``rotary.xpos_span(dtype)`` positions; block [b0, b1) scales its queries by
        zeta^((m - b0)/scale_base) and the keys 0..b1-1 by zeta^(-(n - b0)/scale_base): q.k is the same
        as with absolute scales, but no scale exceeds 2^16 (earlier keys only shrink, towards the
        vanishing weight they have anyway)."""
        rotary = self.rotary
        qkv = self.Wqkv(hidden)
        q, k, v = qkv.unflatten(-1, (3, self.n_heads, self.head_dim)).permute(2, 0, 3, 1, 4)
        q, k = rotary.rotate_without_xpos(q), rotary.rotate_without_xpos(k)  # fp32
        seqlen, block = q.shape[2], rotary.xpos_span(v.dtype)
        pos = torch.arange(seqlen, device=q.device, dtype=torch.float32)
        outputs = []
        for b0 in range(0, seqlen, block):
            b1 = min(b0 + block, seqlen)
            q_scale, k_scale = rotary.xpos_block_scales(pos, b0, b1)
            q_block = (q[:, :, b0:b1] * q_scale.repeat(1, 2)).to(v.dtype)  # both halves of each pair
            k_block = (k[:, :, :b1] * k_scale.repeat(1, 2)).to(v.dtype)
            mask = causal_lower_right(b1 - b0, b1)
            outputs.append(
                F.scaled_dot_product_attention(
                    q_block, k_block, v[:, :, :b1], attn_mask=mask, dropout_p=dropout
                )
            )
        return torch.cat(outputs, dim=2)

    def _check_xpos_cache(self, positions: int, dtype: torch.dtype) -> None:
        """Clear error instead of inf/NaN when a KV cache would hold xPos keys past their finite range."""
        if self.rotary is None or not self.rotary.xpos:
            return
        limit = self.rotary.xpos_cache_limit(dtype)
        if positions > limit:
            raise ValueError(
                f"xPos with a KV cache holds at most {limit:,} positions in {dtype} (cached keys carry "
                f"the absolute scale zeta^(-pos/{self.rotary.xpos_scale_base:g}), which overflows past "
                f"that), but {positions:,} were asked for; score longer sequences with the cacheless "
                f"forward (model(input_ids)), which re-centres the scales, or raise mixer.xpos_scale_base"
            )

    def step(self, hidden: Tensor, cache: AttentionCache) -> Tensor:
        """One token: hidden (batch, d_model) -> (batch, d_model); updates ``cache`` in place.

        The token's position, where its key/value go and which cached positions it sees all come from
        the device counter ``cache.seqlen`` (no host sync), so the step can be captured in a CUDA graph.
        A preallocated cache attends over its whole buffer with a mask (fixed shapes); a growing cache
        (eager only) attends over the filled part. With the Triton backend the whole step is the fused
        q/k/v GEMM, one decode-attention launch (two when the keys are split) and out_proj."""
        if cache.host_seqlen is not None:
            self._check_xpos_cache(cache.host_seqlen + 1, cache.key.dtype)
        if self._decode_with_kernel(hidden):
            cache.reserve_token()
            rotary = self.rotary
            y = _decode_kernel_module().decode_attention_triton(
                self.Wqkv(hidden),
                cache.key,
                cache.value,
                cache.seqlen,
                inv_freq=None if rotary is None else rotary.inv_freq,
                zeta=rotary.zeta if rotary is not None and rotary.xpos else None,
                xpos_scale_base=rotary.xpos_scale_base if rotary is not None else 512.0,
            )
            cache.advance()
            return self.out_proj(y)
        q, k, v = self._qkv(hidden[:, None], cache.seqlen)
        q = q.to(cache.key.dtype)
        cache.write_token(k, v)
        if cache.max_seqlen is None:
            n = cache.tokens_so_far() + 1
            y = F.scaled_dot_product_attention(q, cache.key[:, :, :n], cache.value[:, :, :n])
        else:
            y = F.scaled_dot_product_attention(q, cache.key, cache.value, attn_mask=cache.visible_mask())
        cache.advance()
        return self._out(y.to(hidden.dtype)).squeeze(1)

    def _decode_with_kernel(self, x: Tensor) -> bool:
        """Whether the Triton inference kernels (decode step, in-place rotary) run for input ``x``
        (see ``decode_backend``)."""
        if self.decode_backend == "torch":
            return False
        fits = self.head_dim >= 16 and self.head_dim & (self.head_dim - 1) == 0
        if self.decode_backend == "auto":
            return x.is_cuda and fits and _decode_kernel_module() is not None
        if not fits:
            raise ValueError(
                f"decode_backend='triton' needs a power-of-two head_dim >= 16, got {self.head_dim}; "
                "use decode_backend='torch' or 'auto'"
            )
        if _decode_kernel_module() is None:
            raise RuntimeError("decode_backend='triton' needs triton installed; use 'torch' or 'auto'")
        if not x.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
            raise RuntimeError(
                "decode_backend='triton' on CPU tensors needs TRITON_INTERPRET=1 (slow, for tests); "
                "use decode_backend='auto' for SDPA on CPU"
            )
        return True

    def allocate_cache(
        self,
        batch_size: int,
        dtype: torch.dtype,
        device: torch.device,
        max_seqlen: int | None = None,
    ) -> AttentionCache:
        """An empty KV cache: buffers for ``max_seqlen`` tokens allocated once (what CUDA-graph decoding
        needs), or, with None, buffers that grow as tokens arrive."""
        if max_seqlen is not None:
            self._check_xpos_cache(max_seqlen, dtype)
        return AttentionCache.allocate(batch_size, self.n_heads, self.head_dim, dtype, device, max_seqlen)
