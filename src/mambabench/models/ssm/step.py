"""One recurrent step of a diagonal SSM through the shared scan dispatch point, for real or complex A.

The dispatch point's ``selective_state_update`` handles real A only. For complex A (S4D-Lin, H3's
diagonal SSM) the step is one call of ``selective_scan_fn`` on a two-position sequence: position 0
loads the current state (u=1, delta=1, B=h with one B group per channel, zero initial state, so
h_1 = h), position 1 is the real step. The recurrence itself therefore stays in one place.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from mambabench.kernels import selective_scan_fn, selective_state_update


def _interleave(x: Tensor) -> Tensor:
    """complex (..., L) -> real (..., 2L) with re/im interleaved (the dispatch point's complex B/C layout)."""
    return torch.view_as_real(x).flatten(-2)


def ssm_step(
    state: Tensor,
    x: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    B_per_token: bool = True,
    C_per_token: bool = True,
    backend: str = "auto",
) -> Tensor:
    """Advance ``state`` by one token (in place) and return the output.

    Args:
        state: (batch, dim, dstate), fp32 for real A, complex64 for complex A.
        x, delta: (batch, dim); z: optional gate (batch, dim).
        A: (dim, dstate) real or complex.
        B, C: (batch, dstate) per token (``B_per_token``/``C_per_token``) or (dim, dstate) constant;
            complex tensors for complex A.
        D, delta_bias: (dim,).
    Returns:
        (batch, dim) in x's dtype.
    """
    batch, dim = x.shape
    dstate = A.shape[1]
    if not A.is_complex():
        if not (B_per_token and C_per_token):  # grouped layout for both: constant = one group per channel
            B = B.unsqueeze(1) if B_per_token else B.unsqueeze(0).expand(batch, dim, dstate).contiguous()
            C = C.unsqueeze(1) if C_per_token else C.unsqueeze(0).expand(batch, dim, dstate).contiguous()
        return selective_state_update(
            state, x, delta, A, B, C, D, z, delta_bias, delta_softplus, backend=backend
        )
    dt = delta.float()
    if delta_bias is not None:
        dt = dt + delta_bias.float()
    if delta_softplus:
        dt = F.softplus(dt)
    B_t = B.to(torch.complex64)
    B_t = (
        B_t[:, None].expand(batch, dim, dstate)
        if B_per_token
        else B_t.unsqueeze(0).expand(batch, dim, dstate)
    )
    # grouped variable B, one group per channel: (batch, dim, dstate, 2 positions)
    B_seq = _interleave(torch.stack([state.to(torch.complex64), B_t], dim=-1))
    if not C_per_token:
        C_seq = C
    else:
        C_t = C.to(torch.complex64)[:, None]  # (batch, 1, dstate)
        C_seq = _interleave(torch.stack([torch.zeros_like(C_t), C_t], dim=-1))
    u = torch.stack([torch.ones_like(x), x], dim=-1)
    delta_seq = torch.stack([torch.ones_like(dt), dt], dim=-1)
    z_seq = None if z is None else torch.stack([torch.zeros_like(z), z], dim=-1)
    out, last = selective_scan_fn(
        u, delta_seq, A, B_seq, C_seq, D, z_seq, return_last_state=True, backend=backend
    )
    state.copy_(last)
    return out[..., 1]
