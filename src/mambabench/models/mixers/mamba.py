"""The Mamba block (Gu & Dao, §3.4, Fig. 3): gated selective SSM with a short causal convolution.

Shapes, parameter names and initialisation follow the official ``mamba_ssm.modules.mamba_simple.Mamba``
so that parameter counts match the released models and their state dicts map one to one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mambabench.kernels import (
    causal_conv1d_fn,
    causal_conv1d_update,
    selective_scan_fn,
    selective_state_update_fused,
)
from mambabench.models.mixers.inner import INNER_LAYERS, make_inner
from mambabench.models.mixers.mamba_fused import mamba_in_proj, mamba_inner_fn
from mambabench.models.ssm import init_a_matrix, inverse_softplus_dt_bias, ssm_step

MAX_D_STATE = 256
# decode steps of up to this many sequences project dt inside the state-update kernel
DT_PROJ_IN_KERNEL_MAX_BATCH = 16


@dataclass
class MambaCache:
    """Recurrent state of one Mamba layer during generation.

    conv_state: (batch, d_inner, d_conv), the last d_conv inputs of the convolution.
    ssm_state: (batch, d_inner, d_state) fp32 SSM state h_t (complex64 for complex A; empty when an
        ablation inner layer replaces S6).
    inner: the cache of that inner layer (None for S6).
    """

    conv_state: Tensor
    ssm_state: Tensor
    inner: Any = None


class Mamba(nn.Module):
    """Mamba mixer: in_proj -> causal conv1d -> SiLU -> selective SSM (S6) -> gate SiLU(z) -> out_proj.

    Args:
        d_model: model width D.
        d_state: SSM state size N (<= 256).
        d_conv: width of the causal depthwise convolution.
        expand: E; the inner width is d_inner = E * D.
        dt_rank: rank R of the delta projection; "auto" = ceil(d_model / 16); 0 = no input-dependent
            delta (same as selective_delta=False).
        dt_min, dt_max: range of the initial step sizes (log-uniform).
        dt_init: "random" (uniform weights of std R^-0.5 * dt_scale) or "constant".
        dt_scale, dt_init_floor: see the official code.
        conv_bias: bias on the convolution; bias: bias on in_proj/out_proj.
        scan_backend: backend of the one scan dispatch point ("auto", "triton", "reference", "chunked").
        fused: run the block after in_proj as one autograd Function that saves only xz, the gated
            scan output and the scan's own state, recomputing the conv and the x/dt projections in
            the backward (:func:`mambabench.models.mixers.mamba_fused.mamba_inner_fn`; less activation
            memory, same gradients). Only for the paper's S6 (real A, selective delta/B/C, gate).
        layer_idx: position in the stack (for caches and init).

    Ablation switches (paper §4.6; the defaults are the Mamba of the paper):
        selective_delta, selective_B, selective_C: whether delta, B, C depend on the input (Table 7,
            Table 10's constant-B/C column). A constant delta is a learned per-channel ``dt_bias``;
            constant B/C are learned (d_inner, d_state) parameters ``B``/``C`` (B = 1, C ~ N(0, 1)).
        A_init: "s4d_real" (A_n = -(n+1)), "s4d_lin" (complex -1/2 + i*pi*n), "s4d_lin_real"
            (A_n = -1/2) or "random" (A_n = -exp(N(0, 1))) (Table 8). Complex A keeps its real part
            in ``A_log`` and its imaginary part in ``A_imag``; complex B/C double their projections.
        gate: multiply by silu(z) (False: the "No gate" architecture of Table 1; in_proj then
            makes x only).
        inner_layer: "s6" (this SSM) or an LTI/long-conv layer of Table 6 in its place: "s4_complex",
            "s4_real", "hyena" (see :mod:`mambabench.models.mixers.inner`); d_state, dt_min and dt_max
            pass on to it, ``hyena`` holds the Hyena filter's keywords.
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
        selective_delta: bool = True,
        selective_B: bool = True,
        selective_C: bool = True,
        A_init: str = "s4d_real",
        gate: bool = True,
        inner_layer: str = "s6",
        hyena: dict[str, Any] | None = None,
        fused: bool = False,
    ) -> None:
        super().__init__()
        if not 1 <= d_state <= MAX_D_STATE:
            raise ValueError(
                f"d_state={d_state} is out of range: the scan supports 1 <= d_state <= {MAX_D_STATE}"
            )
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
        if self.dt_rank == 0:  # Table 9's "-" row: no input-dependent delta
            selective_delta = False
        self.selective_delta, self.selective_B, self.selective_C = selective_delta, selective_B, selective_C
        self.A_init, self.gate, self.inner_layer = A_init, gate, inner_layer
        if inner_layer not in INNER_LAYERS:
            raise ValueError(f"inner_layer must be one of {INNER_LAYERS}, got {inner_layer!r}")

        self.in_proj = nn.Linear(d_model, (2 if gate else 1) * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(
            self.d_inner,
            self.d_inner,
            kernel_size=d_conv,
            groups=self.d_inner,
            padding=d_conv - 1,
            bias=conv_bias,
        )
        self.act = nn.SiLU()
        if inner_layer != "s6":  # Table 6: an LTI / long-conv layer in the Mamba block
            self.inner = make_inner(
                inner_layer,
                self.d_inner,
                d_state,
                dt_min=dt_min,
                dt_max=dt_max,
                scan_backend=scan_backend,
                hyena=hyena,
            )
            self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
            self.fused = False
            if fused:
                raise ValueError(
                    f"fused=True supports only the paper's S6 block, not inner_layer={inner_layer!r}; "
                    "set model.mixer.fused=false"
                )
            return
        self.inner = None
        A_log, A_imag = init_a_matrix(A_init, self.d_inner, d_state)
        self.is_complex = A_imag is not None
        self.bc_width = d_state * (2 if self.is_complex else 1)  # complex B/C: (re, im) per state
        self._split = [
            self.dt_rank if selective_delta else 0,
            self.bc_width if selective_B else 0,
            self.bc_width if selective_C else 0,
        ]
        self.x_proj = nn.Linear(self.d_inner, sum(self._split), bias=False) if sum(self._split) else None
        if selective_delta:
            self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
            dt_init_std = self.dt_rank**-0.5 * dt_scale
            if dt_init == "constant":
                nn.init.constant_(self.dt_proj.weight, dt_init_std)
            else:
                nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
            with torch.no_grad():
                self.dt_proj.bias.copy_(inverse_softplus_dt_bias(self.d_inner, dt_min, dt_max, dt_init_floor))
            self.dt_proj.bias._no_reinit = True
        else:  # Table 7/9 "no input-dependent delta": delta = softplus(dt_bias), one per channel
            self.dt_proj = None
            self.dt_bias = nn.Parameter(inverse_softplus_dt_bias(self.d_inner, dt_min, dt_max, dt_init_floor))
        if not selective_B:
            B = torch.ones(self.d_inner, d_state)
            self.B = nn.Parameter(torch.stack([B, torch.zeros_like(B)], -1) if self.is_complex else B)
        if not selective_C:
            C = (
                torch.randn(self.d_inner, d_state, 2) * 0.5**0.5
                if self.is_complex
                else torch.randn(self.d_inner, d_state)
            )
            self.C = nn.Parameter(C)

        # default S4D-Real: A_n = -(n + 1), stored as log so that A stays negative.
        self.A_log = nn.Parameter(A_log)
        self.A_log._no_weight_decay = True
        if self.is_complex:
            self.A_imag = nn.Parameter(A_imag)
            self.A_imag._no_weight_decay = True
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.D._no_weight_decay = True

        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self.fused = fused
        if fused:
            unsupported = [
                name
                for name, bad in (
                    ("complex A (A_init=s4d_lin)", self.is_complex),
                    ("selective_delta=false or dt_rank=0", not selective_delta),
                    ("selective_B=false", not selective_B),
                    ("selective_C=false", not selective_C),
                    ("gate=false", not gate),
                )
                if bad
            ]
            if unsupported:
                raise ValueError(
                    f"fused=True supports only the paper's S6 block, not {', '.join(unsupported)}; "
                    "set model.mixer.fused=false"
                )

    def _a_matrix(self) -> Tensor:
        """A (d_inner, d_state): -exp(A_log), plus i * A_imag for complex A."""
        A = -torch.exp(self.A_log.float())
        return torch.complex(A, self.A_imag.float()) if self.is_complex else A

    def _delta_bias(self) -> Tensor:
        return (self.dt_proj.bias if self.selective_delta else self.dt_bias).float()

    def _scan_bc(self, sel: Tensor | None, const_name: str) -> Tensor:
        """B or C for the scan: selective (batch, seqlen, width) -> (batch, N, seqlen) (complex:
        re/im interleaved, (batch, N, 2 * seqlen)); constant -> (d_inner, N) real or complex."""
        if sel is None:
            p = getattr(self, const_name)
            return torch.view_as_complex(p.float()) if self.is_complex else p
        if self.is_complex:
            return sel.unflatten(-1, (self.d_state, 2)).permute(0, 2, 1, 3).flatten(-2).contiguous()
        return sel.transpose(1, 2).contiguous()

    def _step_bc(self, sel: Tensor | None, const_name: str) -> Tensor:
        """B or C for one step: selective (batch, N) (complex for complex A) or constant (d_inner, N)."""
        if sel is None:
            p = getattr(self, const_name)
            return torch.view_as_complex(p.float()) if self.is_complex else p
        return (
            torch.view_as_complex(sel.float().unflatten(-1, (self.d_state, 2)).contiguous())
            if self.is_complex
            else sel
        )

    def _ssm_params(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Input-dependent (delta, B, C) from x (batch, seqlen, d_inner) (or (batch, d_inner)).

        Returns delta (batch, seqlen, d_inner) without bias (zeros if delta is not selective), B and
        C (batch, seqlen, d_state) (2 * d_state for complex A), or None where they are constant.
        """
        if self.x_proj is None:
            return x.new_zeros(x.shape), None, None
        dt, B, C = torch.split(self.x_proj(x), self._split, dim=-1)
        delta = F.linear(dt, self.dt_proj.weight) if self.selective_delta else x.new_zeros(x.shape)
        return delta, (B if self.selective_B else None), (C if self.selective_C else None)

    def _forward_fused(self, hidden: Tensor) -> Tensor:
        """The ``fused`` path: hidden (batch, seqlen, d_model) -> (batch, seqlen, d_model).

        in_proj is computed as W @ hidden^T so that xz (batch, 2 * d_inner, seqlen) has unit stride
        along seqlen (the official layout): the conv and the scan then read x and z in place.
        """
        xz = mamba_in_proj(hidden, self.in_proj.weight, self.in_proj.bias)  # (batch, 2 * d_inner, seqlen)
        return mamba_inner_fn(
            xz,
            self.conv1d.weight.squeeze(1),
            self.conv1d.bias,
            self.x_proj.weight,
            self.dt_proj.weight,
            self.out_proj.weight,
            self.out_proj.bias,
            self._a_matrix(),
            self.D.float(),
            self._delta_bias(),
            self.d_state,
            backend=self.scan_backend,
        )

    def forward(self, hidden: Tensor, cache: MambaCache | None = None) -> Tensor:
        """hidden: (batch, seqlen, d_model) -> (batch, seqlen, d_model); fills ``cache`` if given."""
        if self.fused and cache is None:
            return self._forward_fused(hidden)
        if cache is not None and self._fused_step:
            return self._prefill(hidden, cache)
        seqlen = hidden.shape[1]
        xz = self.in_proj(hidden).transpose(1, 2)  # (batch, 2 * d_inner, seqlen)
        x, z = xz.chunk(2, dim=1) if self.gate else (xz, None)
        if cache is not None:
            cache.conv_state.copy_(F.pad(x, (self.d_conv - seqlen, 0))[..., -self.d_conv :])
        x = causal_conv1d_fn(
            x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu", backend=self.scan_backend
        )
        if self.inner is not None:
            y = self.inner(x, cache=None if cache is None else cache.inner)
            y = y if z is None else y * F.silu(z)
            return self.out_proj(y.transpose(1, 2))
        delta, B, C = self._ssm_params(x.transpose(1, 2))
        out = selective_scan_fn(
            x,
            delta.transpose(1, 2),
            self._a_matrix(),
            self._scan_bc(B, "B"),
            self._scan_bc(C, "C"),
            self.D.float(),
            z=z,
            delta_bias=self._delta_bias(),
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

    def _prefill(self, hidden: Tensor, cache: MambaCache) -> Tensor:
        """The forward of the paper's S6 block that fills ``cache`` (generation's prompt), with every
        (batch, d_inner, seqlen) tensor made in the layout the conv and scan kernels read in place:
        xz = W_in @ hidden^T, x_dbl = W_x @ x and delta = W_dt @ dt as batched GEMMs (unit stride along
        seqlen), so no copy of x, z or delta is made (each is 2 GB for 128 prompts of 2048 tokens at
        Mamba-1.4B). hidden (batch, seqlen, d_model) -> (batch, seqlen, d_model)."""
        xz = mamba_in_proj(hidden, self.in_proj.weight, self.in_proj.bias)  # (batch, 2 * d_inner, seqlen)
        x, z = xz.chunk(2, dim=1)
        cache.conv_state.copy_(F.pad(x, (self.d_conv - x.shape[-1], 0))[..., -self.d_conv :])
        x = causal_conv1d_fn(
            x, self.conv1d.weight.squeeze(1), self.conv1d.bias, activation="silu", backend=self.scan_backend
        )
        x_dbl = torch.matmul(self.x_proj.weight, x)  # (batch, dt_rank + 2 * d_state, seqlen)
        dt, B, C = torch.split(x_dbl, self._split, dim=1)
        delta = torch.matmul(self.dt_proj.weight, dt)  # (batch, d_inner, seqlen)
        y, last_state = selective_scan_fn(
            x,
            delta,
            self._a_matrix(),
            B,
            C,
            self.D.float(),
            z=z,
            delta_bias=self._delta_bias(),
            delta_softplus=True,
            return_last_state=True,
            backend=self.scan_backend,
        )
        cache.ssm_state.copy_(last_state)
        return self.out_proj(y.transpose(1, 2))

    def step(self, hidden: Tensor, cache: MambaCache) -> Tensor:
        """One token: hidden (batch, d_model) -> (batch, d_model), updating ``cache`` in place.

        The paper's S6 block takes two kernel launches besides its GEMMs: the conv update with SiLU,
        and (after x_proj) dt_proj + softplus + exp(A_log) + state update + D + SiLU(z) gate in one
        (:func:`mambabench.kernels.selective_state_update_fused`; dt_proj is a GEMM of its own above
        ``DT_PROJ_IN_KERNEL_MAX_BATCH`` sequences); x, z, dt, B, C stay views.
        """
        xz = self.in_proj(hidden)
        x, z = xz.chunk(2, dim=-1) if self.gate else (xz, None)  # (batch, d_inner) each
        x = causal_conv1d_update(
            x, cache.conv_state, self.conv1d.weight.squeeze(1), self.conv1d.bias, "silu", self.scan_backend
        )
        if self.inner is not None:
            y = self.inner.step(x, cache.inner)
            return self.out_proj(y if z is None else y * F.silu(z))
        if self._fused_step:
            dt, B, C = torch.split(self.x_proj(x), self._split, dim=-1)
            # small batches: dt_proj inside the kernel (one launch less); large ones: one GEMM, instead of
            # every (batch row, channel block) program re-reading its slice of the dt_proj weight
            dt_in_kernel = x.shape[0] <= DT_PROJ_IN_KERNEL_MAX_BATCH
            y = selective_state_update_fused(
                cache.ssm_state,
                x,
                dt if dt_in_kernel else F.linear(dt, self.dt_proj.weight),
                self.dt_proj.weight if dt_in_kernel else None,
                self.dt_proj.bias,
                self.A_log,
                B,
                C,
                self.D,
                z,
                backend=self.scan_backend,
            )
            return self.out_proj(y)
        delta, B, C = self._ssm_params(x)
        y = ssm_step(
            cache.ssm_state,
            x,
            delta,
            self._a_matrix(),
            self._step_bc(B, "B"),
            self._step_bc(C, "C"),
            self.D.float(),
            z=z,
            delta_bias=self._delta_bias(),
            delta_softplus=True,
            B_per_token=B is not None,
            C_per_token=C is not None,
            backend=self.scan_backend,
        )
        return self.out_proj(y)

    @property
    def _fused_step(self) -> bool:
        """The paper's S6 (real A; selective delta, B, C; gate): the one-launch decode step applies."""
        return (
            self.inner is None
            and not self.is_complex
            and self.selective_delta
            and self.selective_B
            and self.selective_C
            and self.gate
            and self.dt_proj.bias is not None
        )

    def allocate_cache(
        self, batch_size: int, dtype: torch.dtype, device: torch.device, max_seqlen: int | None = None
    ) -> MambaCache:
        """Zero state for ``batch_size`` sequences (conv state in ``dtype``, SSM state in fp32); its size
        does not depend on ``max_seqlen``."""
        conv_state = torch.zeros(batch_size, self.d_inner, self.d_conv, dtype=dtype, device=device)
        if self.inner is not None:
            return MambaCache(
                conv_state,
                torch.zeros(batch_size, self.d_inner, 0, device=device),
                self.inner.allocate_cache(batch_size, dtype, device, max_seqlen=max_seqlen),
            )
        state_dtype = torch.complex64 if self.is_complex else torch.float32
        return MambaCache(
            conv_state=conv_state,
            ssm_state=torch.zeros(batch_size, self.d_inner, self.d_state, dtype=state_dtype, device=device),
        )

    def state_size(self) -> int:
        """Numbers of recurrent state per sequence (zoology's measure): d_inner * (d_state + d_conv)."""
        return self.d_inner * (self.d_state + self.d_conv)
