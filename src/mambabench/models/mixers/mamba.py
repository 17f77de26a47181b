"""The Mamba block (Gu & Dao, §3.4, Fig. 3): gated selective SSM with a short causal convolution.

Shapes, parameter names and initialisation follow the official ``mamba_ssm.modules.mamba_simple.Mamba``
so that parameter counts match the released models and their state dicts map one to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambabench.kernels import (
    causal_conv1d_fn,
    causal_conv1d_update,
    selective_scan_fn,
    selective_state_update,
)

MAX_D_STATE = 256


@dataclass
class MambaCache:
    """Recurrent state of one Mamba layer during generation.

    conv_state: (batch, d_inner, d_conv), the last d_conv inputs of the convolution.
    ssm_state: (batch, d_inner, d_state) fp32 SSM state h_t.
    """

    conv_state: Tensor
    ssm_state: Tensor


def inverse_softplus_dt_bias(
    d_inner: int, dt_min: float, dt_max: float, dt_init_floor: float, generator: torch.Generator | None = None
) -> Tensor:
    """dt ~ logUniform[dt_min, dt_max] (clamped below at dt_init_floor), returned as softplus^-1(dt): (d_inner,)."""
    dt = torch.exp(
        torch.rand(d_inner, generator=generator) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
    ).clamp(min=dt_init_floor)
    return dt + torch.log(-torch.expm1(-dt))


class Mamba(nn.Module):
    """Mamba mixer: in_proj -> causal conv1d -> SiLU -> selective SSM (S6) -> gate SiLU(z) -> out_proj.

    Args:
        d_model: model width D.
        d_state: SSM state size N (<= 256).
        d_conv: width of the causal depthwise convolution.
        expand: E; the inner width is d_inner = E * D.
        dt_rank: rank R of the delta projection; "auto" = ceil(d_model / 16).
        dt_min, dt_max: range of the initial step sizes (log-uniform).
        dt_init: "random" (uniform weights of std R^-0.5 * dt_scale) or "constant".
        dt_scale, dt_init_floor: see the official code.
        conv_bias: bias on the convolution; bias: bias on in_proj/out_proj.
        scan_backend: backend of the one scan dispatch point ("auto", "triton", "reference", "chunked").
        layer_idx: position in the stack (for caches and init).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init: str = "random",
        dt_scale: float = 1.0,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        scan_backend: str = "auto",
        layer_idx: int | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= d_state <= MAX_D_STATE:
            raise ValueError(f"d_state={d_state} is out of range: the scan supports 1 <= d_state <= {MAX_D_STATE}")
        if dt_init not in ("random", "constant"):
            raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = int(expand * d_model)
        self.dt_rank = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.scan_backend = scan_backend
        self.layer_idx = layer_idx

        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner, padding=d_conv - 1, bias=conv_bias
        )
        self.act = nn.SiLU()
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)

        dt_init_std = self.dt_rank**-0.5 * dt_scale
        if dt_init == "constant":
            nn.init.constant_(self.dt_proj.weight, dt_init_std)
        else:
            nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        with torch.no_grad():
            self.dt_proj.bias.copy_(inverse_softplus_dt_bias(self.d_inner, dt_min, dt_max, dt_init_floor))
        self.dt_proj.bias._no_reinit = True

        # S4D-Real: A_n = -(n + 1), stored as log so that A stays negative.
        A = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(self.d_inner, 1)
        self.A_log = nn.Parameter(torch.log(A))
        self.A_log._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True

        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)

    def _ssm_params(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Input-dependent (delta, B, C) from x (batch, seqlen, d_inner).

        Returns delta (batch, seqlen, d_inner) without bias, B and C (batch, seqlen, d_state).
        """
        x_dbl = self.x_proj(x)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.linear(dt, self.dt_proj.weight), B, C

    def forward(self, hidden: Tensor, cache: MambaCache | None = None) -> Tensor:
        """hidden: (batch, seqlen, d_model) -> (batch, seqlen, d_model); fills ``cache`` if given."""
        seqlen = hidden.shape[1]
        xz = self.in_proj(hidden).transpose(1, 2)  # (batch, 2 * d_inner, seqlen)
        x, z = xz.chunk(2, dim=1)
        if cache is not None:
            cache.conv_state.copy_(F.pad(x, (self.d_conv - seqlen, 0))[..., -self.d_conv :])
        x = causal_conv1d_fn(
            x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu", backend=self.scan_backend
        )
        delta, B, C = self._ssm_params(x.transpose(1, 2))
        A = -torch.exp(self.A_log.float())
        out = selective_scan_fn(
            x,
            delta.transpose(1, 2),
            A,
            B.transpose(1, 2).contiguous(),
            C.transpose(1, 2).contiguous(),
            self.D.float(),
            z=z,
            delta_bias=self.dt_proj.bias.float(),
            delta_softplus=True,
            return_last_state=cache is not None,
            backend=self.scan_backend,
        )
        if cache is not None:
            y, last_state = out
            cache.ssm_state.copy_(last_state)
        else:
            y = out
        return self.out_proj(y.transpose(1, 2))

    def step(self, hidden: Tensor, cache: MambaCache) -> Tensor:
        """One token: hidden (batch, d_model) -> (batch, d_model), updating ``cache`` in place."""
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # (batch, d_inner) each
        x = causal_conv1d_update(x, cache.conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu")
        delta, B, C = self._ssm_params(x)
        A = -torch.exp(self.A_log.float())
        y = selective_state_update(
            cache.ssm_state, x, delta, A, B, C, self.D.float(), z=z,
            dt_bias=self.dt_proj.bias.float(), dt_softplus=True, backend=self.scan_backend,
        )
        return self.out_proj(y)

    def allocate_cache(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> MambaCache:
        """Zero state for ``batch_size`` sequences (conv state in ``dtype``, SSM state in fp32)."""
        return MambaCache(
            conv_state=torch.zeros(batch_size, self.d_inner, self.d_conv, dtype=dtype, device=device),
            ssm_state=torch.zeros(batch_size, self.d_inner, self.d_state, dtype=torch.float32, device=device),
        )

    def state_size(self) -> int:
        """Numbers of recurrent state per sequence (zoology's measure): d_inner * (d_state + d_conv)."""
        return self.d_inner * (self.d_state + self.d_conv)
