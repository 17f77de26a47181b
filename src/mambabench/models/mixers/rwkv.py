"""RWKV-4 (Peng et al. 2023): time-mix (WKV linear attention with per-channel decay) and channel-mix.

WKV at position t, per channel, with decay w > 0 and bonus u::

    wkv_t = (sum_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t) / (same with v -> 1)

Numerator and denominator are the linear recurrence a_t = e^{-w} a_{t-1} + e^{k_t} v_t (and with 1
for v), so both run through the shared scan dispatch point (state size 1, delta = 1, A = -w) as
2 * d_model channels; the current token's bonus is added afterwards:
wkv_t = (a_t + (e^u - 1) e^{k_t} v_t) / (b_t + (e^u - 1) e^{k_t}). For range, every k is measured
from a per-sequence maximum c (the ratio does not change); decoding keeps c in the cache and rescales
the state when a larger k arrives.

Deviations from the reference implementation, for this framework's block layout: the channel-mix is
the block's MLP (it keeps its own token-shift state in the layer cache), the extra LayerNorm after the
embedding (ln0) is not used, and the time-mix/decay initialisation uses the layer index but the
channel-mix (built without it) starts from mixing ratios of 1/2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mambabench.kernels import selective_scan_fn, selective_state_update


@dataclass
class RWKVCache:
    """Recurrent state of one RWKV layer.

    time_shift, channel_shift: (batch, d_model) previous (normed) inputs of time-mix / channel-mix.
    wkv_state: (batch, 2 * d_model, 1) fp32 numerator and denominator, in units of e^{offset}.
    offset: (batch, d_model) the running maximum of k.
    """

    time_shift: Tensor
    channel_shift: Tensor
    wkv_state: Tensor
    offset: Tensor


def _token_shift(x: Tensor, first: Tensor | None = None) -> Tensor:
    """x (batch, seqlen, D) -> the previous token's x at every position (``first`` or 0 at t=0)."""
    prev = torch.zeros_like(x[:, :1]) if first is None else first[:, None].to(x.dtype)
    return torch.cat([prev, x[:, :-1]], dim=1)


class RWKVTimeMix(nn.Module):
    """RWKV-4 time-mix: r, k, v from token-shifted inputs -> sigmoid(r) * WKV(k, v) -> out_proj.

    Args:
        d_model: width D.
        n_layer: depth of the stack, for the layer-dependent initialisation.
        scan_backend: backend of the scan dispatch point.
    """

    def __init__(
        self, d_model: int, n_layer: int = 12, scan_backend: str = "auto", layer_idx: int | None = None
    ) -> None:
        super().__init__()
        self.d_model, self.scan_backend, self.layer_idx = d_model, scan_backend, layer_idx
        layer = layer_idx or 0
        ratio_0_to_1 = layer / max(1, n_layer - 1)
        ratio_1_to_almost0 = 1.0 - layer / max(1, n_layer)
        h = torch.arange(d_model, dtype=torch.float32)
        # decay speeds from -5 to 3 (log of w), the reference RWKV-4 schedule
        self.time_decay = nn.Parameter(-5 + 8 * (h / max(1, d_model - 1)) ** (0.7 + 1.3 * ratio_0_to_1))
        zigzag = torch.tensor([(i + 1) % 3 - 1 for i in range(d_model)], dtype=torch.float32) * 0.5
        self.time_first = nn.Parameter(torch.full((d_model,), 0.3).log() + zigzag)
        x = h / d_model
        self.time_mix_k = nn.Parameter(x**ratio_1_to_almost0)
        self.time_mix_v = nn.Parameter(x**ratio_1_to_almost0 + 0.3 * ratio_0_to_1)
        self.time_mix_r = nn.Parameter(x ** (0.5 * ratio_1_to_almost0))
        for p in (self.time_decay, self.time_first, self.time_mix_k, self.time_mix_v, self.time_mix_r):
            p._no_weight_decay = True
        self.key = nn.Linear(d_model, d_model, bias=False)
        self.value = nn.Linear(d_model, d_model, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def _rkv(self, x: Tensor, prev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        mix = lambda m: x * m + prev * (1 - m)
        return (
            torch.sigmoid(self.receptance(mix(self.time_mix_r))),
            self.key(mix(self.time_mix_k)).float(),
            self.value(mix(self.time_mix_v)).float(),
        )

    def _decay(self) -> Tensor:
        """A of the scan, (2D, 1): -w for numerator and denominator channels."""
        A = -torch.exp(self.time_decay.float())
        return torch.cat([A, A])[:, None]

    def _combine(self, ab: Tensor, ek: Tensor, v: Tensor) -> Tensor:
        """Inclusive sums (a, b) stacked on the channel axis + the bonus of the current token -> wkv."""
        a, b = ab.chunk(2, dim=1)
        bonus = (
            torch.expm1(self.time_first.float())[..., None] * ek
            if ek.dim() == 3
            else torch.expm1(self.time_first.float()) * ek
        )
        return (a + bonus * v) / (b + bonus).clamp_min(1e-30)

    def forward(self, hidden: Tensor, cache: RWKVCache | None = None) -> Tensor:
        """hidden: (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""
        r, k, v = self._rkv(hidden, _token_shift(hidden))
        k, v = k.transpose(1, 2), v.transpose(1, 2)  # (batch, D, seqlen)
        offset = k.amax(dim=-1)  # (batch, D)
        ek = torch.exp(k - offset[..., None])
        u = torch.cat([ek * v, ek], dim=1)
        ones = torch.ones(2 * self.d_model, 1, device=hidden.device)
        out = selective_scan_fn(
            u,
            torch.ones_like(u),
            self._decay(),
            ones,
            ones,
            return_last_state=cache is not None,
            backend=self.scan_backend,
        )
        if cache is not None:
            out, last = out
            cache.wkv_state.copy_(last)
            cache.offset.copy_(offset)
            cache.time_shift.copy_(hidden[:, -1])
        wkv = self._combine(out, ek, v).transpose(1, 2)
        return self.out_proj((r.float() * wkv).to(hidden.dtype))

    def step(self, hidden: Tensor, cache: RWKVCache) -> Tensor:
        """hidden: (batch, d_model) -> (batch, d_model)."""
        r, k, v = self._rkv(hidden, cache.time_shift.to(hidden.dtype))
        cache.time_shift.copy_(hidden)
        offset = torch.maximum(cache.offset, k)
        scale = torch.exp(cache.offset - offset)
        cache.wkv_state.mul_(torch.cat([scale, scale], dim=1)[..., None])  # re-express in units of e^offset
        cache.offset.copy_(offset)
        ek = torch.exp(k - offset)
        x = torch.cat([ek * v, ek], dim=1)
        ones = torch.ones(x.shape[0], 1, 1, device=x.device)
        ab = selective_state_update(
            cache.wkv_state, x, torch.ones_like(x), self._decay(), ones, ones, backend=self.scan_backend
        )
        wkv = self._combine(ab, ek, v)
        return self.out_proj((r.float() * wkv).to(hidden.dtype))

    def allocate_cache(
        self, batch_size: int, dtype: torch.dtype, device: torch.device, max_seqlen: int | None = None
    ) -> RWKVCache:
        """Initial state (its size does not depend on ``max_seqlen``)."""
        D = self.d_model
        return RWKVCache(
            time_shift=torch.zeros(batch_size, D, dtype=dtype, device=device),
            channel_shift=torch.zeros(batch_size, D, dtype=dtype, device=device),
            wkv_state=torch.zeros(batch_size, 2 * D, 1, device=device),
            offset=torch.full((batch_size, D), -1e4, device=device),
        )


class RWKVChannelMix(nn.Module):
    """RWKV-4 channel-mix (the block's MLP): sigmoid(r) * fc2(relu(key(x_k))^2), token-shifted inputs.

    Stateful: the block passes the layer's :class:`RWKVCache` so decoding sees the previous token.

    Args:
        d_model: width D; expand: hidden width / D (4 in RWKV-4).
    """

    stateful = True

    def __init__(self, d_model: int, expand: float = 4.0) -> None:
        super().__init__()
        hidden = int(expand * d_model)
        self.time_mix_k = nn.Parameter(torch.full((d_model,), 0.5))
        self.time_mix_r = nn.Parameter(torch.full((d_model,), 0.5))
        self.time_mix_k._no_weight_decay = True
        self.time_mix_r._no_weight_decay = True
        self.key = nn.Linear(d_model, hidden, bias=False)
        self.receptance = nn.Linear(d_model, d_model, bias=False)
        self.fc2 = nn.Linear(hidden, d_model, bias=False)

    def _mix(self, x: Tensor, prev: Tensor) -> Tensor:
        xk = x * self.time_mix_k + prev * (1 - self.time_mix_k)
        xr = x * self.time_mix_r + prev * (1 - self.time_mix_r)
        return torch.sigmoid(self.receptance(xr)) * self.fc2(torch.relu(self.key(xk)) ** 2)

    def forward(self, x: Tensor, cache: RWKVCache | None = None) -> Tensor:
        """x: (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""
        if cache is not None:
            cache.channel_shift.copy_(x[:, -1])
        return self._mix(x, _token_shift(x))

    def step(self, x: Tensor, cache: RWKVCache) -> Tensor:
        """x: (batch, d_model) -> (batch, d_model)."""
        out = self._mix(x, cache.channel_shift.to(x.dtype))
        cache.channel_shift.copy_(x)
        return out
