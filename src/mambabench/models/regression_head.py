"""Any backbone of the framework on sequences of real vectors: linear read-in, blocks, linear read-out.

Garg et al. (arXiv 2208.01066) and Grazzi et al. (arXiv 2402.03170) feed in-context regression prompts
to GPT-2, Mamba, S4 and RWKV this way: each input vector is projected to ``d_model`` in place of a token
embedding, and a linear layer reads a scalar prediction from every position. The blocks are those of
:class:`mambabench.models.LMBackbone` (same mixer / MLP / norm partials as the LM configs), so the
architectures compared are exactly the framework's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from mambabench.models.lm import LMBackbone, init_residual_network


class VectorSequenceModel(nn.Module):
    """inputs (batch, seqlen, n_dims) -> predictions (batch, seqlen, n_outputs).

    Args:
        n_dims: width of the input vectors (set from the data module when null in the config).
        d_model, n_layer, mixer, mlp, norm, residual_in_fp32, layer_mixers: as :class:`LMHeadModel`.
        max_seq_len: learned absolute positions for that many positions (GPT-2); None: none (Mamba, S4, RWKV).
        n_outputs: width of the read-out (1 for scalar regression).
        initializer_range: std of the learned position embeddings.
    """

    def __init__(
        self,
        n_dims: int | None,
        d_model: int,
        n_layer: int,
        mixer: Callable[..., nn.Module],
        mlp: Callable[..., nn.Module] | None = None,
        norm: Callable[[int], nn.Module] | None = None,
        residual_in_fp32: bool = True,
        layer_mixers: dict[int, Callable[..., nn.Module]] | None = None,
        max_seq_len: int | None = None,
        n_outputs: int = 1,
        initializer_range: float = 0.02,
    ) -> None:
        super().__init__()
        if not n_dims or n_dims < 1:
            raise ValueError(
                "VectorSequenceModel needs n_dims (the input width); it normally comes from the "
                "data module (data=icl_regression sets it)"
            )
        self.n_dims, self.d_model, self.n_layer = n_dims, d_model, n_layer
        self.backbone = LMBackbone(
            1,
            d_model,
            n_layer,
            mixer,
            mlp,
            norm,
            residual_in_fp32,
            layer_mixers,
            max_seq_len,
            fused_add_norm=False,
        )
        self.backbone.embedding = nn.Linear(n_dims, d_model)  # the read-in replaces the token embedding
        self.read_out = nn.Linear(d_model, n_outputs)
        init_residual_network(self, n_layer, initializer_range, has_mlp=mlp is not None)

    @property
    def max_seq_len(self) -> int | None:
        positions = self.backbone.position_embedding
        return None if positions is None else positions.num_embeddings

    def _read_in(self, inputs: Tensor) -> Tensor:
        hidden = self.backbone.embedding(inputs)
        positions = self.backbone.position_embedding
        if positions is None:
            return hidden
        if inputs.shape[1] > positions.num_embeddings:
            raise ValueError(
                f"sequence of {inputs.shape[1]} vectors exceeds the learned positions "
                f"(model.max_seq_len={positions.num_embeddings}); raise model.max_seq_len"
            )
        return hidden + positions(torch.arange(inputs.shape[1], device=inputs.device))

    def forward(self, inputs: Tensor, return_layers: bool = False) -> Tensor | tuple[Tensor, list[Tensor]]:
        """inputs (batch, seqlen, n_dims) -> predictions (batch, seqlen, n_outputs); with ``return_layers``
        also the residual stream after the read-in and after each block: n_layer + 1 tensors
        (batch, seqlen, d_model), the last one after the final norm (what the read-out sees)."""
        if inputs.shape[-1] != self.n_dims:
            raise ValueError(f"inputs have width {inputs.shape[-1]} but the model reads n_dims={self.n_dims}")
        hidden, residual = self._read_in(inputs), None
        layers = [hidden]
        for layer in self.backbone.layers:
            hidden, residual = layer(hidden, residual)
            if return_layers:
                layers.append(residual + hidden)
        residual = hidden if residual is None else residual + hidden
        final = self.backbone.norm_f(residual.to(self.backbone.norm_f.weight.dtype))
        predictions = self.read_out(final)
        if not return_layers:
            return predictions
        layers[-1] = final
        return predictions, layers
