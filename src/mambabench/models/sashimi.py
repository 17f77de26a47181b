"""SaShiMi: a causal multi-scale U-Net of residual sequence layers for raw audio (Goel et al. 2022,
arXiv:2202.09729; the audio backbone of the Mamba paper, arXiv:2312.00752 §4.4).

Layout, after the design of ``state-spaces/s4`` (``models/sashimi``), for ``pool=[p1, p2]``:

    tokens -> embedding (D)
      outer level 0 (D, length L):      n_layer residual layers ─────────────┐ skip
        down-pool p1 -> 2D, L/p1                                               │
        outer level 1 (2D, L/p1):       n_layer residual layers ───────┐ skip │
          down-pool p2 -> 4D, L/(p1 p2)                                 │      │
          center (4D):                  n_layer residual layers (+ its input)
          up-pool p2 -> 2D  (+ skip) ───────────────────────────────────┘      │
        outer level 1, up side:         n_layer residual layers (+ their input)
        up-pool p1 -> D  (+ skip) ─────────────────────────────────────────────┘
      outer level 0, up side:           n_layer residual layers (+ their input)
    -> norm -> linear head (vocab)

so the network has (2 * len(pool) + 1) * n_layer residual layers: Table 5's 8 centre layers at length
1000 flanked by 8 + 8 outer layers at 4000 and 16000 (40 in all) for ``pool=[4, 4]``, ``n_layer=8``.
Down-pooling reshapes p consecutive steps into one vector and projects it (D*p -> D*expand); up-pooling
projects back (D*expand -> D*p) and unfolds it into p steps, shifted right by one pooled step so that
position t only sees pooled summaries of inputs before t (causality); the skip carries position t itself.

Each residual layer is ``x + mixer(norm(x))`` optionally followed by ``x + mlp(norm(x))``; which mixer
and MLP fill the outer and the centre levels is configuration (Table 5: S4+MLP, MHA+MLP, Mamba).

Generation runs the recurrence: every level keeps its layers' states plus a buffer of the last p
inputs and the p outputs prepared for the current block, so memory per sample stays constant for
SSM mixers (an attention mixer's KV cache grows, as attention's does).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

MixerFactory = Callable[..., nn.Module]


class ResidualLayer(nn.Module):
    """Pre-norm residual layer: x + mixer(norm(x)), then (with an MLP) x + mlp(norm2(x)).

    x: (batch, seqlen, d_model) in ``forward``, (batch, d_model) in ``step``.
    """

    def __init__(
        self, d_model: int, mixer: nn.Module, mlp: nn.Module | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mixer = mixer
        self.norm2 = nn.LayerNorm(d_model) if mlp is not None else None
        self.mlp = mlp
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cache: Any = None) -> Tensor:
        x = x + self.dropout(self.mixer(self.norm(x), cache=cache))
        if self.mlp is not None:
            x = x + self.dropout(self.mlp(self.norm2(x)))
        return x

    def step(self, x: Tensor, cache: Any) -> Tensor:
        x = x + self.mixer.step(self.norm(x), cache)
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x

    def allocate_cache(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> Any:
        return self.mixer.allocate_cache(batch_size, dtype, device)


class LayerStack(nn.ModuleList):
    """Residual layers applied in order; caches are one per layer."""

    def forward(self, x: Tensor) -> Tensor:
        for layer in self:
            x = layer(x)
        return x

    def step(self, x: Tensor, caches: list[Any]) -> Tensor:
        for layer, cache in zip(self, caches):
            x = layer.step(x, cache)
        return x

    def allocate_cache(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> list[Any]:
        return [layer.allocate_cache(batch_size, dtype, device) for layer in self]


class DownPool(nn.Module):
    """(batch, L, d) -> (batch, L / pool, d * expand): p consecutive steps concatenated and projected."""

    def __init__(self, d_model: int, pool: int, expand: int) -> None:
        super().__init__()
        self.pool = pool
        self.linear = nn.Linear(d_model * pool, d_model * expand)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x.reshape(x.shape[0], x.shape[1] // self.pool, -1))


class UpPool(nn.Module):
    """(batch, L / pool, d * expand) -> (batch, L, d), shifted right by one pooled step (causal)."""

    def __init__(self, d_model: int, pool: int, expand: int) -> None:
        super().__init__()
        self.pool = pool
        self.d_model = d_model
        self.linear = nn.Linear(d_model * expand, d_model * pool)

    def forward(self, z: Tensor) -> Tensor:
        y = self.linear(z)
        y = torch.cat([torch.zeros_like(y[:, :1]), y[:, :-1]], dim=1)
        return y.reshape(y.shape[0], -1, self.d_model)

    def block(self, z: Tensor) -> Tensor:
        """One pooled step (batch, d * expand) -> the next p outputs (batch, pool, d)."""
        return self.linear(z).reshape(z.shape[0], self.pool, self.d_model)


@dataclass
class LevelState:
    """Recurrent state of one U-Net level during generation."""

    down: list[Any]
    up: list[Any]
    inner: Any
    inputs: Tensor  # (batch, pool, d): this block's inputs to the down-pool so far
    outputs: Tensor  # (batch, pool, d): up-pool outputs for this block (from the previous block)
    position: int = 0  # index inside the current block


class Center(nn.Module):
    """The innermost level: residual layers with a residual connection around them."""

    def __init__(self, layers: LayerStack) -> None:
        super().__init__()
        self.layers = layers

    def forward(self, x: Tensor) -> Tensor:
        return x + self.layers(x)

    def step(self, x: Tensor, state: list[Any]) -> Tensor:
        return x + self.layers.step(x, state)

    def allocate_cache(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> list[Any]:
        return self.layers.allocate_cache(batch_size, dtype, device)


class UNetLevel(nn.Module):
    """Down layers -> down-pool -> inner level -> up-pool (+ skip) -> up layers (+ their input)."""

    def __init__(
        self, d_model: int, pool: int, expand: int, down: LayerStack, up: LayerStack, inner: nn.Module
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.pool = pool
        self.down = down
        self.down_pool = DownPool(d_model, pool, expand)
        self.inner = inner
        self.up_pool = UpPool(d_model, pool, expand)
        self.up = up

    def forward(self, x: Tensor) -> Tensor:
        skip = self.down(x)
        u = self.up_pool(self.inner(self.down_pool(skip))) + skip
        return self.up(u) + u

    def step(self, x: Tensor, state: LevelState) -> Tensor:
        skip = self.down.step(x, state.down)
        state.inputs[:, state.position] = skip
        u = state.outputs[:, state.position] + skip
        y = self.up.step(u, state.up) + u
        state.position += 1
        if state.position == self.pool:  # a block is complete: advance the coarser level once
            z = self.inner.step(self.down_pool.linear(state.inputs.flatten(1)), state.inner)
            state.outputs = self.up_pool.block(z)
            state.position = 0
        return y

    def allocate_cache(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> LevelState:
        zeros = torch.zeros(batch_size, self.pool, self.d_model, dtype=dtype, device=device)
        return LevelState(
            self.down.allocate_cache(batch_size, dtype, device),
            self.up.allocate_cache(batch_size, dtype, device),
            self.inner.allocate_cache(batch_size, dtype, device),
            zeros,
            zeros.clone(),
        )


class SaShiMi(nn.Module):
    """Token-level SaShiMi network (see the module docstring).

    Args:
        vocab_size: number of input/output tokens (256 for 8-bit mu-law; from the data module).
        d_model: width D of the outermost level; each pooling multiplies it by ``expand``.
        n_layer: residual layers per side of each level and in the centre (paper: 8, or 15 for 24.3M).
        pool: pooling factors from the outside in (paper: [4, 4] for SC09, [16, 16] for YouTubeMix).
        expand: width factor per pooling (2).
        outer_mixer / outer_mlp: partials ``mixer(d_model=..., layer_idx=...)`` / ``mlp(d_model=...)`` of the
            layers outside the centre (null MLP: mixer-only layers, e.g. Mamba).
        center_mixer / center_mlp: the same for the centre level (Table 5 ablates them separately).
        down_layer: put layers on the down side of each outer level too (the paper's counts; false: the
            s4 repository's default of layers on the up side only).
        dropout: residual dropout.
    """

    def __init__(
        self,
        vocab_size: int | None,
        d_model: int,
        n_layer: int,
        outer_mixer: MixerFactory,
        center_mixer: MixerFactory,
        pool: list[int] | tuple[int, ...] = (4, 4),
        expand: int = 2,
        outer_mlp: Callable[..., nn.Module] | None = None,
        center_mlp: Callable[..., nn.Module] | None = None,
        down_layer: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if vocab_size is None or vocab_size < 1:
            raise ValueError(
                "SaShiMi needs vocab_size; it normally comes from the data module (256 for mu-law audio)"
            )
        if not pool or any(int(p) < 1 for p in pool):
            raise ValueError(f"pool must be a non-empty list of factors >= 1, got {pool}")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.pool = [int(p) for p in pool]
        self.expand = expand
        self.multiple = math.prod(self.pool)
        counter = iter(range(10**6))

        def stack(
            d: int, mixer: MixerFactory, mlp: Callable[..., nn.Module] | None, count: int
        ) -> LayerStack:
            return LayerStack(
                ResidualLayer(
                    d,
                    mixer(d_model=d, layer_idx=next(counter)),
                    mlp(d_model=d) if mlp is not None else None,
                    dropout,
                )
                for _ in range(count)
            )

        widths = [d_model * expand**i for i in range(len(self.pool) + 1)]
        downs = [stack(w, outer_mixer, outer_mlp, n_layer if down_layer else 0) for w in widths[:-1]]
        level: nn.Module = Center(stack(widths[-1], center_mixer, center_mlp, n_layer))
        for i in reversed(range(len(self.pool))):
            level = UNetLevel(
                widths[i],
                self.pool[i],
                expand,
                downs[i],
                stack(widths[i], outer_mixer, outer_mlp, n_layer),
                level,
            )
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.body = level
        self.norm_f = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size)

    def forward(self, input_ids: Tensor, caches: Any = None, return_hidden: bool = False) -> Tensor:
        """input_ids (batch, seqlen) -> logits (batch, seqlen, vocab) (or hidden (batch, seqlen, d_model)).

        Other lengths than multiples of prod(pool) are padded at the end and cut back. With ``caches`` (generation prefill) the prompt is
        fed step by step, so any length works and the state ends after its last token.
        """
        if caches is not None:
            return torch.stack([self.step(input_ids[:, t], caches) for t in range(input_ids.shape[1])], dim=1)
        seqlen = input_ids.shape[1]
        hidden = self.embedding(input_ids)
        pad = -seqlen % self.multiple
        if pad:  # causal: zeros after the end change no earlier output
            hidden = torch.cat([hidden, hidden.new_zeros(hidden.shape[0], pad, hidden.shape[2])], dim=1)
        hidden = self.norm_f(self.body(hidden)[:, :seqlen])
        return hidden if return_hidden else self.lm_head(hidden)

    def step(self, input_ids: Tensor, caches: Any) -> Tensor:
        """One token per sequence: input_ids (batch,) -> logits (batch, vocab), updating ``caches``."""
        return self.lm_head(self.norm_f(self.body.step(self.embedding(input_ids), caches)))

    def allocate_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> Any:
        """The recurrent state of every level for ``batch_size`` sequences (sizes do not depend on length
        for SSM mixers)."""
        param = next(self.parameters())
        return self.body.allocate_cache(batch_size, dtype or param.dtype, param.device)
