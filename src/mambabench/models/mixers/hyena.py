"""Hyena (Poli et al. 2023): implicit long convolutions and the order-2 Hyena operator.

:class:`HyenaFilter` makes a (dim, seqlen) causal filter from positions: features of t (t, cos and
sin of a few frequencies) -> MLP with sine activations -> times an exponentially decaying window
(one decay rate per channel). :class:`HyenaInner` applies it by FFT (the "Hyena" inner layer of
Tables 1 and 6); :class:`Hyena` is the order-2 operator: in_proj to (x0, x1, v) -> short causal conv
-> v*x1 -> long conv -> *x0 -> out_proj. There is no fixed-size recurrent state: decoding keeps the
long-conv inputs seen so far and evaluates the convolution at the newest position (O(t) per token).

The positional features are computed, not stored, so the filter is defined at any length (safari
stores them as a (l_max, emb_dim) buffer); ``l_max`` only sets the time scale t / l_max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mambabench.kernels import causal_conv1d_fn, causal_conv1d_update
from mambabench.models.ssm import fft_causal_conv


class Sin(nn.Module):
    """sin(w * x) with a learnable per-feature frequency w (Hyena's filter activation)."""

    def __init__(self, dim: int, w: float = 1.0) -> None:
        super().__init__()
        self.freq = nn.Parameter(w * torch.ones(1, dim))

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.freq * x)


class HyenaFilter(nn.Module):
    """Implicit filter h (dim, seqlen) = MLP(PE(t)) * window(t).

    Args:
        dim: channels (one filter each).
        emb_dim: size of the positional features (odd: t plus (emb_dim - 1)/2 cos/sin pairs).
        filter_order: width of the filter MLP.
        num_inner_mlps: hidden layers of the MLP beyond the first.
        w: initial frequency of the sine activations.
        l_max: time scale of the positional features.
        fast_decay_pct, slow_decay_pct, target: the window exp(-|a_c| t) reaches ``target`` after
            fast/slow fractions of l_max for the fastest/slowest channel.
        shift: constant added to the window.
    """

    def __init__(
        self,
        dim: int,
        emb_dim: int = 33,
        filter_order: int = 64,
        num_inner_mlps: int = 2,
        w: float = 1.0,
        l_max: int = 2048,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        target: float = 1e-2,
        shift: float = 0.0,
    ) -> None:
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(f"emb_dim must be odd and >= 3, got {emb_dim}")
        self.dim, self.emb_dim, self.l_max, self.shift = dim, emb_dim, l_max, shift
        bands = (emb_dim - 1) // 2
        self.register_buffer("freqs", torch.linspace(1e-4, bands - 1, bands), persistent=False)
        layers: list[nn.Module] = [nn.Linear(emb_dim, filter_order), Sin(filter_order, w)]
        for _ in range(num_inner_mlps):
            layers += [nn.Linear(filter_order, filter_order), Sin(filter_order, w)]
        layers.append(nn.Linear(filter_order, dim, bias=False))
        self.implicit_filter = nn.Sequential(*layers)
        max_decay = math.log(target) / fast_decay_pct
        min_decay = math.log(target) / slow_decay_pct
        self.register_buffer("deltas", torch.linspace(min_decay, max_decay, dim), persistent=False)

    def forward(self, seqlen: int, start: int = 0) -> Tensor:
        """Filter taps at positions start..seqlen-1 -> (dim, seqlen - start), fp32."""
        device = self.deltas.device
        t = torch.arange(start, seqlen, device=device, dtype=torch.float32)[:, None] / self.l_max  # (L, 1)
        angle = 2 * math.pi * self.freqs[None] * t
        z = torch.cat([t, torch.cos(angle), torch.sin(angle)], dim=-1)  # (L, emb_dim)
        h = self.implicit_filter(z)  # (L, dim)
        window = torch.exp(-t * self.deltas.abs()[None]) + self.shift
        return (h * window).transpose(0, 1)


@dataclass
class LongConvCache:
    """history: inputs of the long convolution, (batch, dim, max_seqlen) fp32, allocated once, the first
    ``length`` positions filled; length: () int64 device tensor (so that a CUDA graph can replay the
    step); conv_state: (batch, 3 * d_model, short_filter_order) of the Hyena operator's short conv."""

    history: Tensor
    length: Tensor
    conv_state: Tensor | None = None


class HyenaInner(nn.Module):
    """Long convolution with an implicit Hyena filter, (batch, dim, seqlen) -> (batch, dim, seqlen).

    Args:
        dim: channels. repeat: one filter per ``repeat`` consecutive channels (H3 heads).
        use_D: skip term y += D * u (Hyena's filter "bias").
        Other keys: :class:`HyenaFilter`.
    """

    def __init__(
        self,
        dim: int,
        repeat: int = 1,
        use_D: bool = True,
        emb_dim: int = 33,
        filter_order: int = 64,
        num_inner_mlps: int = 2,
        w: float = 1.0,
        l_max: int = 2048,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        target: float = 1e-2,
        shift: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % repeat:
            raise ValueError(f"dim={dim} is not a multiple of repeat={repeat}")
        self.dim, self.repeat = dim, repeat
        self.filter = HyenaFilter(
            dim // repeat,
            emb_dim,
            filter_order,
            num_inner_mlps,
            w,
            l_max,
            fast_decay_pct,
            slow_decay_pct,
            target,
            shift,
        )
        self.D = nn.Parameter(torch.randn(dim // repeat)) if use_D else None

    def _taps(self, seqlen: int) -> Tensor:
        k = self.filter(seqlen)
        return k.repeat_interleave(self.repeat, dim=0) if self.repeat > 1 else k

    def _skip(self) -> Tensor | None:
        if self.D is None:
            return None
        return self.D.repeat_interleave(self.repeat) if self.repeat > 1 else self.D

    def forward(self, u: Tensor, cache: LongConvCache | None = None) -> Tensor:
        """u: (batch, dim, seqlen) -> (batch, dim, seqlen); with ``cache`` (a prefill from the start)
        the inputs are kept."""
        if cache is not None:
            seqlen, capacity = u.shape[-1], cache.history.shape[-1]
            if seqlen > capacity:
                raise ValueError(
                    f"prompt of {seqlen} tokens exceeds the Hyena cache of {capacity}; allocate the cache "
                    "with a larger max_seqlen"
                )
            cache.history[..., :seqlen].copy_(u.float())
            cache.length.fill_(seqlen)
        y = fft_causal_conv(u, self._taps(u.shape[-1]))
        D = self._skip()
        if D is not None:
            y = y + u.float() * D.float()[:, None]
        return y.to(u.dtype)

    def step(self, u: Tensor, cache: LongConvCache) -> Tensor:
        """u: (batch, dim) -> (batch, dim): y_t = sum_{s <= t} k_{t-s} u_s over the kept inputs.

        Fixed shapes (the whole history buffer, taps gathered at t - s, masked for s > t) and the
        position in a device tensor: no host synchronisation, so the step can be graph-captured.
        Tokens past the buffer's ``max_seqlen`` overwrite its last slot.
        """
        capacity = cache.history.shape[-1]
        t = cache.length.clamp(max=capacity - 1)
        cache.history.index_copy_(-1, t.view(1), u.float()[..., None])
        lag = t - torch.arange(capacity, device=u.device)  # t - s
        taps = self._taps(capacity)[:, lag.clamp(min=0)] * (lag >= 0)  # k_{t-s}, 0 for s > t
        y = (cache.history * taps).sum(-1)
        cache.length.add_(1)
        D = self._skip()
        if D is not None:
            y = y + u.float() * D.float()
        return y.to(u.dtype)

    def allocate_cache(
        self, batch_size: int, dtype: torch.dtype, device: torch.device, max_seqlen: int | None = None
    ) -> LongConvCache:
        """An empty history for ``max_seqlen`` tokens (default: the filter's ``l_max``)."""
        capacity = max_seqlen or self.filter.l_max
        return LongConvCache(
            history=torch.zeros(batch_size, self.dim, capacity, device=device),
            length=torch.zeros((), dtype=torch.long, device=device),
        )


class Hyena(nn.Module):
    """Order-2 Hyena operator (the H3 block with the SSMs replaced by implicit long convolutions).

    hidden -> in_proj -> (x0, x1, v) -> short causal depthwise conv (width ``short_filter_order``)
    -> v * x1 -> long conv (:class:`HyenaInner`) -> * x0 -> out_proj.

    Args:
        d_model: width D. short_filter_order: width of the short conv (3 in Hyena).
        filter: keyword arguments of :class:`HyenaInner` (emb_dim, filter_order, l_max, ...).
        bias: biases on in_proj/out_proj (Hyena: True; H3++/improved recipe: False).
    """

    def __init__(
        self,
        d_model: int,
        short_filter_order: int = 3,
        emb_dim: int = 33,
        filter_order: int = 64,
        num_inner_mlps: int = 2,
        w: float = 1.0,
        l_max: int = 2048,
        fast_decay_pct: float = 0.3,
        slow_decay_pct: float = 1.5,
        target: float = 1e-2,
        bias: bool = True,
        scan_backend: str = "auto",
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        self.d_model, self.short_filter_order, self.layer_idx = d_model, short_filter_order, layer_idx
        self.scan_backend = scan_backend
        self.in_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.short_filter = nn.Conv1d(
            3 * d_model, 3 * d_model, short_filter_order, groups=3 * d_model, padding=short_filter_order - 1
        )
        self.long_conv = HyenaInner(
            d_model,
            emb_dim=emb_dim,
            filter_order=filter_order,
            num_inner_mlps=num_inner_mlps,
            w=w,
            l_max=l_max,
            fast_decay_pct=fast_decay_pct,
            slow_decay_pct=slow_decay_pct,
            target=target,
        )
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, hidden: Tensor, cache: LongConvCache | None = None) -> Tensor:
        """hidden: (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""
        u = self.in_proj(hidden).transpose(1, 2)  # (batch, 3D, L)
        if cache is not None:
            cache.conv_state.copy_(
                torch.nn.functional.pad(u, (self.short_filter_order - u.shape[-1], 0))[
                    ..., -self.short_filter_order :
                ]
            )
        uc = causal_conv1d_fn(
            u, self.short_filter.weight.squeeze(1), self.short_filter.bias, backend=self.scan_backend
        )
        x0, x1, v = uc.split(self.d_model, dim=1)
        y = self.long_conv(v * x1, cache=cache) * x0
        return self.out_proj(y.transpose(1, 2))

    def step(self, hidden: Tensor, cache: LongConvCache) -> Tensor:
        """hidden: (batch, d_model) -> (batch, d_model)."""
        u = self.in_proj(hidden)
        uc = causal_conv1d_update(
            u, cache.conv_state, self.short_filter.weight.squeeze(1), self.short_filter.bias
        )
        x0, x1, v = uc.split(self.d_model, dim=-1)
        return self.out_proj(self.long_conv.step(v * x1, cache) * x0)

    def allocate_cache(
        self, batch_size: int, dtype: torch.dtype, device: torch.device, max_seqlen: int | None = None
    ) -> LongConvCache:
        cache = self.long_conv.allocate_cache(batch_size, dtype, device, max_seqlen=max_seqlen)
        cache.conv_state = torch.zeros(
            batch_size, 3 * self.d_model, self.short_filter_order, dtype=dtype, device=device
        )
        return cache
