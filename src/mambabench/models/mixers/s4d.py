"""S4D: the diagonal linear time-invariant SSM (Gu et al. 2022), real or complex, ZOH discretisation.

:class:`S4DInner` is the SSM on channels, (batch, dim, seqlen) -> (batch, dim, seqlen): trained as a
long convolution whose kernel K_l = C . diag(Ā)^l . B̄ comes from a Vandermonde product and is applied
by FFT; prefill and decoding use the shared scan dispatch point (constant B/C) so generation carries
the state. It is the "S4 (real)" / "S4 (complex)" inner layer of Tables 1 and 6 and H3's diagonal SSM.
The standalone S4 layer around it is :class:`mambabench.models.mixers.s4.S4D`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mambabench.kernels import selective_scan_fn
from mambabench.models.ssm import SSMCache, fft_causal_conv, init_a_matrix, ssm_step


class S4DInner(nn.Module):
    """Diagonal LTI SSM with per-channel step size, (batch, dim, seqlen) -> (batch, dim, seqlen).

    Args:
        dim: number of data channels.
        d_state: N (complex states for complex A).
        A_init: "s4d_lin" (complex, S4 complex), "s4d_real" (S4 real), "s4d_lin_real" or "random".
        dt_min, dt_max: range of the log-uniform initial step sizes.
        repeat: each set of SSM parameters serves ``repeat`` consecutive channels (H3 heads: dim =
            n_heads * head_dim^2 with one SSM per head); dim must be a multiple of it.
        use_D: skip connection y += D * u.
        scan_backend: backend of the scan dispatch point (prefill / decoding).
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 64,
        A_init: str = "s4d_lin",
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        repeat: int = 1,
        use_D: bool = True,
        scan_backend: str = "auto",
    ) -> None:
        super().__init__()
        if dim % repeat:
            raise ValueError(f"dim={dim} is not a multiple of repeat={repeat}")
        self.dim, self.d_state, self.repeat, self.scan_backend = dim, d_state, repeat, scan_backend
        channels = dim // repeat
        A_log, A_imag = init_a_matrix(A_init, channels, d_state)
        self.is_complex = A_imag is not None
        self.A_log = nn.Parameter(A_log)
        self.A_imag = nn.Parameter(A_imag) if A_imag is not None else None
        log_dt = torch.rand(channels) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        self.log_dt = nn.Parameter(log_dt)
        if self.is_complex:
            self.B = nn.Parameter(
                torch.view_as_real(torch.ones(channels, d_state, dtype=torch.complex64)).clone()
            )
            self.C = nn.Parameter(
                torch.view_as_real(torch.randn(channels, d_state, dtype=torch.complex64)).clone()
            )
        else:
            self.B = nn.Parameter(torch.ones(channels, d_state))
            self.C = nn.Parameter(torch.randn(channels, d_state))
        self.D = nn.Parameter(torch.ones(channels)) if use_D else None
        for p in (self.A_log, self.A_imag, self.log_dt, self.D):
            if p is not None:
                p._no_weight_decay = True

    def _expand(self, p: Tensor | None) -> Tensor | None:
        return None if p is None or self.repeat == 1 else p.repeat_interleave(self.repeat, dim=0)

    def _params(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """Per-channel dt (dim,), A, B_zoh (dt * B_zoh = ZOH B̄), C (dim, N) and D (dim,)."""
        A = -torch.exp(self.A_log.float())
        if self.A_imag is not None:
            A = torch.complex(A, self.A_imag.float())
        B = torch.view_as_complex(self.B.float()) if self.is_complex else self.B.float()
        C = torch.view_as_complex(self.C.float()) if self.is_complex else self.C.float()
        dt = torch.exp(self.log_dt.float())
        dtA = dt[:, None] * A
        B_zoh = B * torch.expm1(dtA) / dtA  # ZOH: B̄ = (dt A)^-1 (exp(dt A) - 1) dt B
        if self.repeat > 1:
            dt, A, B_zoh, C = (x.repeat_interleave(self.repeat, dim=0) for x in (dt, A, B_zoh, C))
        D = self.D if self.repeat == 1 or self.D is None else self._expand(self.D)
        return dt, A, B_zoh, C, D

    def kernel(self, seqlen: int) -> Tensor:
        """Convolution kernel K (dim, seqlen): K_l = C diag(exp(dt A))^l dt B_zoh (2 Re(.) for complex A)."""
        dt, A, B_zoh, C, _ = self._params()
        powers = torch.exp(
            (dt[:, None] * A)[..., None] * torch.arange(seqlen, device=A.device)
        )  # (dim, N, L)
        K = torch.einsum("dn,dnl->dl", C * B_zoh * dt[:, None], powers)
        return 2 * K.real if K.is_complex() else K

    def forward(self, u: Tensor, cache: SSMCache | None = None) -> Tensor:
        """u: (batch, dim, seqlen) -> (batch, dim, seqlen); FFT conv, or the scan when filling ``cache``."""
        dt, A, B_zoh, C, D = self._params()
        if cache is not None:
            delta = dt[None, :, None].expand(u.shape[0], -1, u.shape[-1]).contiguous()
            y, last = selective_scan_fn(
                u,
                delta,
                A,
                B_zoh,
                C,
                None if D is None else D.float(),
                return_last_state=True,
                backend=self.scan_backend,
            )
            cache.ssm_state.copy_(last)
            return y
        y = fft_causal_conv(u, self.kernel(u.shape[-1]))
        if D is not None:
            y = y + u.float() * D.float()[:, None]
        return y.to(u.dtype)

    def step(self, u: Tensor, cache: SSMCache) -> Tensor:
        """u: (batch, dim) -> (batch, dim), advancing ``cache``."""
        dt, A, B_zoh, C, D = self._params()
        delta = dt.expand(u.shape[0], -1)
        return ssm_step(
            cache.ssm_state,
            u,
            delta,
            A,
            B_zoh,
            C,
            None if D is None else D.float(),
            B_per_token=False,
            C_per_token=False,
            backend=self.scan_backend,
        )

    def allocate_cache(
        self, batch_size: int, dtype: torch.dtype, device: torch.device, max_seqlen: int | None = None
    ) -> SSMCache:
        """Zero state (its size does not depend on ``max_seqlen``)."""
        state_dtype = torch.complex64 if self.is_complex else torch.float32
        return SSMCache(torch.zeros(batch_size, self.dim, self.d_state, dtype=state_dtype, device=device))
