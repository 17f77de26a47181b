"""WaveNet (van den Oord et al. 2016, arXiv:1609.03499): a stack of dilated causal convolutions with
gated activations, residual and skip connections; a Table 4 baseline of the Mamba paper (arXiv:2312.00752),
trained there as in SaShiMi's comparison (arXiv:2202.09729).

    tokens -> embedding (d_model channels)
    n_blocks x n_layer layers, dilation 1, 2, 4, ..., 2^(n_layer-1) in every block:
        h    = tanh(W_f * x) . sigmoid(W_g * x)      (dilated causal conv, kernel_size taps, gate_channels)
        x    = x + W_res h                           (1x1, residual stream of d_model channels)
        skip = skip + W_skip h                        (1x1, skip_channels)
    -> ReLU -> Linear(skip, end) -> ReLU -> Linear(end, vocab)

The receptive field is 1 + n_blocks * (kernel_size - 1) * (2^n_layer - 1) samples (4,093 for the default
4 x 10 layers of kernel 2). Generation uses the fast-WaveNet recurrence (Paine et al. 2016,
arXiv:1611.09482): each layer keeps a queue of its last ``dilation * (kernel_size - 1)`` inputs, so one
step costs one column of every convolution and the state has a fixed size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class GatedResidualLayer(nn.Module):
    """One dilated causal gated layer: x (batch, d_model, seqlen) -> (new x, skip (batch, skip, seqlen))."""

    def __init__(
        self, d_model: int, gate_channels: int, skip_channels: int, kernel_size: int, dilation: int
    ) -> None:
        super().__init__()
        self.kernel_size, self.dilation = kernel_size, dilation
        self.conv = nn.Conv1d(d_model, 2 * gate_channels, kernel_size, dilation=dilation)
        self.residual = nn.Conv1d(gate_channels, d_model, 1)
        self.skip = nn.Conv1d(gate_channels, skip_channels, 1)

    @property
    def history(self) -> int:
        """How many past inputs one output needs besides the current one."""
        return self.dilation * (self.kernel_size - 1)

    def _gate_and_project(self, h: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        filt, gate = h.chunk(2, dim=1)
        h = torch.tanh(filt) * torch.sigmoid(gate)
        return x + self.residual(h), self.skip(h)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self._gate_and_project(self.conv(F.pad(x, (self.history, 0))), x)

    def step(self, x: Tensor, queue: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x (batch, d_model) and the queue (batch, d_model, history) of past inputs, oldest first ->
        (new x (batch, d_model), skip (batch, skip), updated queue)."""
        window = torch.cat([queue, x[:, :, None]], dim=2)  # (batch, d_model, history + 1)
        taps = window[:, :, :: self.dilation]  # the kernel_size inputs the convolution reads
        h = torch.einsum("bck,ock->bo", taps, self.conv.weight) + self.conv.bias
        new_x, skip = self._gate_and_project(h[:, :, None], x[:, :, None])
        return new_x[:, :, 0], skip[:, :, 0], window[:, :, 1:]


@dataclass
class WaveNetState:
    """Generation state: one queue (batch, d_model, dilation * (kernel_size - 1)) per layer."""

    queues: list[Tensor]


class WaveNet(nn.Module):
    """Autoregressive WaveNet over tokens (8-bit mu-law samples for audio).

    Args:
        vocab_size: input/output tokens (256 for mu-law audio; from the data module).
        d_model: residual channels.
        n_layer: layers per block (dilations 1 .. 2^(n_layer-1)).
        n_blocks: dilation cycles.
        kernel_size: taps of each dilated convolution (2 in the paper).
        gate_channels: channels of the gated activation (null: d_model).
        skip_channels / end_channels: widths of the skip sum and of the output layer before the logits.
    """

    def __init__(
        self,
        vocab_size: int | None,
        d_model: int = 64,
        n_layer: int = 10,
        n_blocks: int = 4,
        kernel_size: int = 2,
        gate_channels: int | None = None,
        skip_channels: int = 256,
        end_channels: int = 256,
    ) -> None:
        super().__init__()
        if vocab_size is None or vocab_size < 1:
            raise ValueError(
                "WaveNet needs vocab_size; it normally comes from the data module (256 for audio)"
            )
        if kernel_size < 2 or n_layer < 1 or n_blocks < 1:
            raise ValueError(
                f"WaveNet needs kernel_size >= 2, n_layer >= 1 and n_blocks >= 1; got {kernel_size}, "
                f"{n_layer}, {n_blocks}"
            )
        self.vocab_size, self.d_model = vocab_size, d_model
        self.embedding = nn.Embedding(vocab_size, d_model)
        self.layers = nn.ModuleList(
            GatedResidualLayer(d_model, gate_channels or d_model, skip_channels, kernel_size, 2**i)
            for _ in range(n_blocks)
            for i in range(n_layer)
        )
        self.end = nn.Linear(skip_channels, end_channels)
        self.lm_head = nn.Linear(end_channels, vocab_size)

    @property
    def receptive_field(self) -> int:
        """Inputs that one output depends on (the current one included)."""
        return 1 + sum(layer.history for layer in self.layers)

    def _head(self, skip: Tensor) -> Tensor:
        return self.lm_head(F.relu(self.end(F.relu(skip))))

    def forward(
        self, input_ids: Tensor, caches: WaveNetState | None = None, return_hidden: bool = False
    ) -> Tensor:
        """input_ids (batch, seqlen) -> logits (batch, seqlen, vocab), or with ``return_hidden`` the last
        layer's residual stream (batch, seqlen, d_model). With ``caches`` the prompt is fed step by step."""
        if caches is not None:
            return torch.stack([self.step(input_ids[:, t], caches) for t in range(input_ids.shape[1])], dim=1)
        x = self.embedding(input_ids).transpose(1, 2)  # (batch, d_model, seqlen)
        skip = 0
        for layer in self.layers:
            x, s = layer(x)
            skip = skip + s
        if return_hidden:
            return x.transpose(1, 2)
        return self._head(skip.transpose(1, 2))

    def step(self, input_ids: Tensor, caches: WaveNetState) -> Tensor:
        """One token per sequence: input_ids (batch,) -> logits (batch, vocab), updating ``caches``."""
        x = self.embedding(input_ids)
        skip = 0
        for i, layer in enumerate(self.layers):
            x, s, caches.queues[i] = layer.step(x, caches.queues[i])
            skip = skip + s
        return self._head(skip)

    def allocate_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> WaveNetState:
        """Zero queues (the same as the zero padding of the parallel forward) for ``batch_size`` sequences."""
        param = self.embedding.weight
        return WaveNetState(
            [
                torch.zeros(
                    batch_size, self.d_model, layer.history, dtype=dtype or param.dtype, device=param.device
                )
                for layer in self.layers
            ]
        )
