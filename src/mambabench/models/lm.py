"""Token-sequence backbone + language-model head (official ``MixerModel`` / ``MambaLMHeadModel``).

The backbone is embedding -> n_layer x Block(norm, mixer[, mlp]) -> final norm; the head is a linear
layer tied to the embedding. Which mixer and MLP fill the blocks is configuration (Hydra partials),
so the same class builds Mamba, Transformer++ or hybrids. The network knows nothing about data:
the vocabulary size is passed in by whoever pairs it with a data module.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from mambabench.models.block import Block, add_norm_step
from mambabench.models.generation import generate
from mambabench.models.norms import RMSNorm, fused_add_rms_norm
from mambabench.models.positions import SinusoidalPositions


def init_weights(
    module: nn.Module, n_layer: int, initializer_range: float = 0.02, n_residuals_per_layer: int = 1
) -> None:
    """GPT-2 style init of the official code: zero Linear biases (unless ``_no_reinit``), N(0, 0.02)
    embeddings, and kaiming-uniform output projections scaled by 1/sqrt(n_residuals_per_layer * n_layer)."""
    if isinstance(module, nn.Linear):
        if module.bias is not None and not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=initializer_range)
    for name, p in module.named_parameters(recurse=False):
        if name == "weight" and isinstance(module, nn.Linear) and getattr(module, "_is_residual_out", False):
            nn.init.kaiming_uniform_(p, a=math.sqrt(5))
            with torch.no_grad():
                p /= math.sqrt(n_residuals_per_layer * n_layer)


# tests set this to take the Triton sliced head on CPU tensors (under TRITON_INTERPRET=1)
_SLICED_HEAD_ON_CPU = False


def init_residual_network(model: nn.Module, n_layer: int, initializer_range: float, has_mlp: bool) -> None:
    """Mark every residual output projection (``out_proj``, ``fc2``) of ``model`` and initialise all its
    weights with :func:`init_weights` (one or two residual branches per layer)."""
    for module in model.modules():
        if hasattr(module, "out_proj"):
            module.out_proj._is_residual_out = True
        if hasattr(module, "fc2"):
            module.fc2._is_residual_out = True
    model.apply(
        partial(
            init_weights,
            n_layer=n_layer,
            initializer_range=initializer_range,
            n_residuals_per_layer=2 if has_mlp else 1,
        )
    )


@dataclass
class PositionCounter:
    """Number of tokens already embedded during cached decoding (for absolute positions)."""

    offset: int = 0


class LMBackbone(nn.Module):
    """Embedding + residual blocks + final norm: input_ids (batch, seqlen) -> hidden (batch, seqlen, d_model)."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_layer: int,
        mixer: Callable[..., nn.Module],
        mlp: Callable[..., nn.Module] | None = None,
        norm: Callable[[int], nn.Module] | None = None,
        residual_in_fp32: bool = True,
        layer_mixers: dict[int, Callable[..., nn.Module]] | None = None,
        max_seq_len: int | None = None,
        fused_add_norm: bool = False,
        gradient_checkpointing: bool = False,
        sinusoidal_positions: bool = False,
        initializer_range: float = 0.02,
    ) -> None:
        super().__init__()
        if max_seq_len and sinusoidal_positions:
            raise ValueError(
                f"model.max_seq_len={max_seq_len} (learned absolute positions) and "
                "model.sinusoidal_positions=true (fixed ones) both add absolute positions; set "
                "max_seq_len=null for sinusoidal positions or sinusoidal_positions=false for learned ones"
            )
        norm_cls = norm or partial(RMSNorm, eps=1e-5)
        self.gradient_checkpointing = gradient_checkpointing
        self.residual_in_fp32 = residual_in_fp32
        self.fused_add_norm = fused_add_norm
        layer_mixers = dict(layer_mixers or {})
        bad = [i for i in layer_mixers if not 0 <= int(i) < n_layer]
        if bad:
            raise ValueError(f"layer_mixers names layers {bad}, but the model has layers 0..{n_layer - 1}")
        self.embedding = nn.Embedding(vocab_size, d_model)
        # learned absolute positions (GPT-3 / MHA-Abs) only when max_seq_len is given
        self.position_embedding = nn.Embedding(max_seq_len, d_model) if max_seq_len else None
        # fixed sinusoidal absolute positions for any length (MHA-Abs), no parameters
        self.sinusoidal_positions = (
            SinusoidalPositions(d_model, std=initializer_range) if sinusoidal_positions else None
        )
        self.layers = nn.ModuleList(
            Block(
                d_model,
                mixer=layer_mixers.get(i, layer_mixers.get(str(i), mixer))(d_model=d_model, layer_idx=i),
                norm_cls=norm_cls,
                mlp=mlp(d_model=d_model) if mlp is not None else None,
                residual_in_fp32=residual_in_fp32,
                fused_add_norm=fused_add_norm,
            )
            for i in range(n_layer)
        )
        self.norm_f = norm_cls(d_model)

    @property
    def has_absolute_positions(self) -> bool:
        """Whether absolute positions (learned or sinusoidal) are added to the token embeddings."""
        return self.position_embedding is not None or self.sinusoidal_positions is not None

    def _embed(self, input_ids: Tensor, caches: list[Any] | None) -> Tensor:
        """Token (+ absolute position) embedding of input_ids (batch, seqlen); advances the position
        counter kept as the extra last entry of ``caches`` when positions are absolute."""
        hidden = self.embedding(input_ids)
        if not self.has_absolute_positions:
            return hidden
        offset = 0
        if caches is not None:
            offset = caches[-1].offset
            caches[-1].offset += input_ids.shape[-1]
        pos = torch.arange(offset, offset + input_ids.shape[-1], device=input_ids.device)
        if self.sinusoidal_positions is not None:
            return hidden + self.sinusoidal_positions(pos).to(hidden.dtype)
        max_len = self.position_embedding.num_embeddings
        if offset + input_ids.shape[-1] > max_len:
            raise ValueError(
                f"sequence of {offset + input_ids.shape[-1]} tokens exceeds the learned positions "
                f"(model.max_seq_len={max_len})"
            )
        return hidden + self.position_embedding(pos)

    def forward(self, input_ids: Tensor, caches: list[Any] | None = None) -> Tensor:
        hidden, residual = self._embed(input_ids, caches), None
        recompute = (
            self.gradient_checkpointing and self.training and caches is None and torch.is_grad_enabled()
        )
        for i, layer in enumerate(self.layers):
            if recompute:  # keep only block inputs; recompute each block's activations in the backward
                hidden, residual = torch.utils.checkpoint.checkpoint(
                    layer, hidden, residual, use_reentrant=False
                )
            else:
                hidden, residual = layer(hidden, residual, cache=None if caches is None else caches[i])
        if self.fused_add_norm:
            fused = fused_add_rms_norm(
                hidden, residual, self.norm_f, self.residual_in_fp32, autocast_out=False
            )
            if fused is not None:
                return fused[0]
        residual = hidden if residual is None else residual + hidden
        return self.norm_f(residual.to(self.norm_f.weight.dtype))

    def step(self, input_ids: Tensor, caches: list[Any]) -> Tensor:
        """input_ids (batch,) -> hidden (batch, d_model)."""
        if self.has_absolute_positions:
            hidden, residual = self._embed(input_ids[:, None], caches)[:, 0], None
        else:
            hidden, residual = self.embedding(input_ids), None
        for layer, cache in zip(self.layers, caches):
            hidden, residual = layer.step(hidden, residual, cache)
        return add_norm_step(hidden, residual, self.norm_f, self.residual_in_fp32)[0]


class LMHeadModel(nn.Module):
    """Language model: backbone + (tied) linear head. Logits are cut back to the true vocabulary.

    Args:
        vocab_size: number of tokens; padded up to ``pad_vocab_size_multiple`` for the embedding.
        d_model, n_layer: width and depth.
        mixer: partial building one mixer as ``mixer(d_model=..., layer_idx=...)``.
        mlp: optional partial ``mlp(d_model=...)`` placed after each mixer (None: Mamba's mixer-only blocks).
        norm: partial ``norm(d_model)``; RMSNorm(eps=1e-5) when None.
        residual_in_fp32, tie_embeddings, pad_vocab_size_multiple: as the official MambaConfig.
        initializer_range: std of the embedding init.
        layer_mixers: {layer index: partial} to put a different mixer at some layers (hybrids).
        max_seq_len: if given, learned absolute position embeddings for that many positions are
            added to the token embeddings (GPT-3 Transformer); None: no learned absolute positions.
        fused_add_norm: residual add + RMSNorm as one Triton kernel on CUDA (see :class:`Block`).
        gradient_checkpointing: in training, keep only each block's input and recompute the block in the
            backward pass (activation memory ~ one block instead of all; about a third more compute).
        sinusoidal_positions: add the fixed sinusoidal absolute positions of arXiv:1706.03762 to the
            token embeddings (MHA-Abs): no parameters, any length; excludes ``max_seq_len``. Scaled
            to the embeddings' init (each coordinate's std = ``initializer_range``).
    """

    def __init__(
        self,
        vocab_size: int | None,
        d_model: int,
        n_layer: int,
        mixer: Callable[..., nn.Module],
        mlp: Callable[..., nn.Module] | None = None,
        norm: Callable[[int], nn.Module] | None = None,
        residual_in_fp32: bool = True,
        tie_embeddings: bool = True,
        pad_vocab_size_multiple: int = 8,
        initializer_range: float = 0.02,
        layer_mixers: dict[int, Callable[..., nn.Module]] | None = None,
        max_seq_len: int | None = None,
        fused_add_norm: bool = False,
        gradient_checkpointing: bool = False,
        sinusoidal_positions: bool = False,
    ) -> None:
        super().__init__()
        if vocab_size is None or vocab_size < 1:
            raise ValueError(
                "LMHeadModel needs vocab_size; it normally comes from the data module "
                "(build the network with mambabench.utils.build.build_network)"
            )
        for name, value in (
            ("d_model", d_model),
            ("n_layer", n_layer),
            ("pad_vocab_size_multiple", pad_vocab_size_multiple),
        ):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"model.{name}={value} must be a positive integer")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.n_layer = n_layer
        self._ids_checked_on_gpu = False
        padded = math.ceil(vocab_size / pad_vocab_size_multiple) * pad_vocab_size_multiple
        self.padded_vocab_size = padded
        self.backbone = LMBackbone(
            padded,
            d_model,
            n_layer,
            mixer,
            mlp,
            norm,
            residual_in_fp32,
            layer_mixers,
            max_seq_len,
            fused_add_norm,
            gradient_checkpointing,
            sinusoidal_positions,
            initializer_range,
        )
        self.lm_head = nn.Linear(d_model, padded, bias=False)
        init_residual_network(self, n_layer, initializer_range, has_mlp=mlp is not None)
        if tie_embeddings:
            self.lm_head.weight = self.backbone.embedding.weight

    def forward(
        self, input_ids: Tensor, caches: list[Any] | None = None, return_hidden: bool = False
    ) -> Tensor:
        """input_ids (batch, seqlen) -> logits (batch, seqlen, vocab_size), or hidden states
        (batch, seqlen, d_model) with ``return_hidden``. With ``caches`` the recurrent state is filled."""
        self._check_token_ids(input_ids)
        hidden = self.backbone(input_ids, caches)
        if return_hidden:
            return hidden
        return self._logits(hidden)

    def _check_token_ids(self, input_ids: Tensor) -> None:
        """Ids outside ``0..vocab_size-1`` would index past the embedding (a device-side assert on GPU):
        checked on every CPU call, and on the first GPU call only (the check waits for the GPU)."""
        if input_ids.numel() == 0 or torch.compiler.is_compiling():
            return
        if input_ids.is_cuda:
            if self._ids_checked_on_gpu:
                return
            self._ids_checked_on_gpu = True
        low, high = int(input_ids.min()), int(input_ids.max())
        if low < 0 or high >= self.vocab_size:
            bad = low if low < 0 else high
            raise ValueError(
                f"token id {bad} is outside this model's vocabulary 0..{self.vocab_size - 1}; the data's "
                f"tokenizer and model.vocab_size disagree (leave model.vocab_size null to take it from the data)"
            )

    def step(self, input_ids: Tensor, caches: list[Any]) -> Tensor:
        """One token per sequence: input_ids (batch,) -> logits (batch, vocab_size)."""
        return self._logits(self.backbone.step(input_ids, caches))

    def generate(self, input_ids: Tensor, max_new_tokens: int, **kwargs: Any) -> Tensor:
        """Continue the prompts input_ids (batch, prompt_len): see
        :func:`mambabench.models.generation.generate` (greedy with ``temperature=0``; the decode step
        is replayed as a CUDA graph on GPU)."""
        return generate(self, input_ids, max_new_tokens, **kwargs)

    def _logits(self, hidden: Tensor) -> Tensor:
        """hidden (..., d_model) -> logits (..., vocab_size), a view of the padded logits. The GEMM runs
        over the padded vocabulary on purpose: an output width that is not a multiple of 8 (50277) drops
        cuBLAS off its fast kernels (the reason for pad_vocab_size_multiple), which costs more than the
        strided reads of the sliced view. With gradients on CUDA, :class:`mambabench.kernels.head.SlicedHead`
        writes the padded gradient in one pass instead of slice_backward's memset + strided copy."""
        weight = self.lm_head.weight
        if (
            self.vocab_size < weight.shape[0]
            and self.lm_head.bias is None
            and torch.is_grad_enabled()
            and (hidden.is_cuda or _SLICED_HEAD_ON_CPU)
            and (hidden.requires_grad or weight.requires_grad)
        ):
            try:
                from mambabench.kernels.head import sliced_head_triton
            except ImportError:  # no triton
                pass
            else:
                return sliced_head_triton(hidden, weight, self.vocab_size)
        return self.lm_head(hidden)[..., : self.vocab_size]

    def allocate_cache(
        self, batch_size: int, dtype: torch.dtype | None = None, max_seqlen: int | None = None
    ) -> list[Any]:
        """One recurrent-state object per layer (see :mod:`mambabench.models.generation`), allocated once
        and updated in place by :meth:`step`; ``max_seqlen`` sizes the caches that grow with the sequence."""
        param = next(self.parameters())
        dtype = dtype or param.dtype
        caches = [
            _allocate_mixer_cache(layer.mixer, batch_size, dtype, param.device, max_seqlen)
            for layer in self.backbone.layers
        ]
        if self.backbone.has_absolute_positions:
            caches.append(PositionCounter())  # read by the backbone's absolute positions
        return caches


def _allocate_mixer_cache(
    mixer: nn.Module, batch_size: int, dtype: torch.dtype, device: torch.device, max_seqlen: int | None
) -> Any:
    """``mixer.allocate_cache``, passing ``max_seqlen`` to the mixers that take it."""
    if "max_seqlen" in inspect.signature(mixer.allocate_cache).parameters:
        return mixer.allocate_cache(batch_size, dtype, device, max_seqlen=max_seqlen)
    return mixer.allocate_cache(batch_size, dtype, device)
