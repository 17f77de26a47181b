"""SampleRNN (Mehri et al. 2016, arXiv:1612.07837): a hierarchy of recurrent tiers at decreasing time
scales over a sample-level MLP; a Table 4 baseline of the Mamba paper (arXiv:2312.00752), as in
SaShiMi's comparison (arXiv:2202.09729).

For ``frame_sizes=[16, 4]`` (a 3-tier model) and inputs u (the targets shifted right by one token):

    tier 0 (frames of 16): a GRU reads, at frame j, the 16 inputs u[16j-15 .. 16j] (embedded, concatenated,
        projected to d_model); its output is unfolded into 16 / 4 = 4 conditioning vectors, one per frame of
        the tier below.
    tier 1 (frames of 4): a GRU reads the 4 inputs u[4j-3 .. 4j] plus tier 0's vector for frame j; its
        output is unfolded into 4 vectors, one per sample.
    sample level: an MLP reads the last ``sample_window`` inputs u[t-w+1 .. t] plus tier 1's vector for t
        and gives the logits of the next token.

Output t sees inputs up to u[t] only (inputs before the sequence are zero vectors), so the model is
causal at every tier. Generation steps the same hierarchy: a tier runs its GRU once every frame_size
tokens and hands its unfolded vectors down; the state (GRU states, the last inputs, the pending vectors)
has a fixed size.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class FrameTier(nn.Module):
    """A GRU over frames of ``frame_size`` inputs, conditioned on the tier above; unfolds each output
    into ``frame_size // next_size`` conditioning vectors for the tier below."""

    def __init__(self, embed_dim: int, d_model: int, n_layer: int, frame_size: int, next_size: int) -> None:
        super().__init__()
        self.frame_size, self.ratio = frame_size, frame_size // next_size
        self.input = nn.Linear(frame_size * embed_dim, d_model)
        self.rnn = nn.GRU(d_model, d_model, n_layer, batch_first=True)
        self.unfold = nn.Linear(d_model, d_model * self.ratio)

    def forward(
        self, frames: Tensor, cond: Tensor | None, hidden: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """frames (batch, n, frame_size * embed), cond (batch, n, d_model) or None -> (conditioning of the
        tier below (batch, n * ratio, d_model), GRU state (n_layer, batch, d_model))."""
        x = self.input(frames)
        if cond is not None:
            x = x + cond
        out, hidden = self.rnn(x, hidden)
        batch, n, d = out.shape
        return self.unfold(out).reshape(batch, n * self.ratio, d), hidden


class SampleMLP(nn.Module):
    """The sample-level predictor: (last ``window`` inputs, conditioning) -> hidden (d_model) -> logits."""

    def __init__(self, embed_dim: int, d_model: int, window: int, vocab_size: int) -> None:
        super().__init__()
        self.input = nn.Linear(window * embed_dim, d_model)
        self.hidden = nn.Sequential(
            nn.ReLU(), nn.Linear(d_model, d_model), nn.ReLU(), nn.Linear(d_model, d_model), nn.ReLU()
        )
        self.lm_head = nn.Linear(d_model, vocab_size)

    def features(self, window: Tensor, cond: Tensor) -> Tensor:
        return self.hidden(self.input(window) + cond)


@dataclass
class SampleRNNState:
    """Generation state: position, the last inputs (batch, history, embed), each tier's GRU state and the
    conditioning vectors it handed down for its current frame (batch, ratio, d_model)."""

    position: int
    recent: Tensor
    hidden: list[Tensor | None]
    pending: list[Tensor | None] = field(default_factory=list)


class SampleRNN(nn.Module):
    """Autoregressive SampleRNN over tokens (8-bit mu-law samples for audio).

    Args:
        vocab_size: input/output tokens (256 for audio; from the data module).
        d_model: width of every tier's GRU and of the sample-level MLP.
        n_layer: GRU layers per tier.
        frame_sizes: frame size of each recurrent tier, top first; each divides the one above.
        sample_window: inputs the sample-level MLP reads (null: the lowest frame size, as the paper).
        embed_dim: token embedding width (the paper embeds the 256 quantisation levels in 256 dims).
    """

    def __init__(
        self,
        vocab_size: int | None,
        d_model: int = 1024,
        n_layer: int = 1,
        frame_sizes: list[int] | tuple[int, ...] = (16, 4),
        sample_window: int | None = None,
        embed_dim: int = 256,
    ) -> None:
        super().__init__()
        if vocab_size is None or vocab_size < 1:
            raise ValueError(
                "SampleRNN needs vocab_size; it normally comes from the data module (256 for audio)"
            )
        sizes = [int(f) for f in frame_sizes]
        if not sizes or any(f < 1 for f in sizes) or any(a % b for a, b in zip(sizes, sizes[1:])):
            raise ValueError(
                f"frame_sizes must be positive, top tier first, each dividing the one above; got {sizes}"
            )
        self.vocab_size, self.d_model, self.frame_sizes = vocab_size, d_model, sizes
        self.sample_window = int(sample_window or sizes[-1])
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.tiers = nn.ModuleList(
            FrameTier(embed_dim, d_model, n_layer, f, nxt) for f, nxt in zip(sizes, [*sizes[1:], 1])
        )
        self.sample = SampleMLP(embed_dim, d_model, self.sample_window, vocab_size)
        self.history = max(sizes[0], self.sample_window)

    @staticmethod
    def _windows(emb: Tensor, size: int, stride: int) -> Tensor:
        """(batch, L, e) -> (batch, L // stride, size * e): the ``size`` inputs ending at each position
        t = k * stride (zeros before the start)."""
        padded = F.pad(emb, (0, 0, size - 1, 0))  # (batch, L + size - 1, e)
        win = padded.unfold(1, size, stride)  # (batch, n, e, size)
        return win.transpose(2, 3).flatten(2)

    def forward(
        self, input_ids: Tensor, caches: SampleRNNState | None = None, return_hidden: bool = False
    ) -> Tensor:
        """input_ids (batch, seqlen) -> logits (batch, seqlen, vocab) (or the sample-level hidden
        (batch, seqlen, d_model)). Lengths that are not a multiple of the top frame size are padded at the
        end and cut back. With ``caches`` the prompt is fed step by step."""
        if caches is not None:
            return torch.stack([self.step(input_ids[:, t], caches) for t in range(input_ids.shape[1])], dim=1)
        seqlen = input_ids.shape[1]
        emb = self.embedding(input_ids)
        pad = -seqlen % self.frame_sizes[0]
        if pad:  # causal: inputs after the end change no earlier output
            emb = F.pad(emb, (0, 0, 0, pad))
        cond = None
        for tier in self.tiers:
            # frame j reads inputs u[(j-1)F+1 .. jF]: windows of F ending at t = jF
            cond, _ = tier(self._windows(emb, tier.frame_size, tier.frame_size), cond)
        hidden = self.sample.features(self._windows(emb, self.sample_window, 1), cond)[:, :seqlen]
        return hidden if return_hidden else self.sample.lm_head(hidden)

    def step(self, input_ids: Tensor, caches: SampleRNNState) -> Tensor:
        """One token per sequence: input_ids (batch,) -> logits (batch, vocab), updating ``caches``."""
        t = caches.position
        caches.recent = torch.cat([caches.recent[:, 1:], self.embedding(input_ids)[:, None]], dim=1)
        cond = None
        for i, tier in enumerate(self.tiers):
            size = tier.frame_size
            if t % size == 0:  # a new frame of this tier starts: run its GRU once
                frame = caches.recent[:, -size:].flatten(1)[:, None]
                caches.pending[i], caches.hidden[i] = tier(frame, cond, caches.hidden[i])
            lower = self.frame_sizes[i + 1] if i + 1 < len(self.tiers) else 1
            cond = caches.pending[i][:, (t % size) // lower][:, None]
        window = caches.recent[:, -self.sample_window :].flatten(1)
        caches.position += 1
        return self.sample.lm_head(self.sample.features(window, cond[:, 0]))

    def allocate_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> SampleRNNState:
        """Empty state (zero inputs before the start, as the zero padding of the parallel forward)."""
        param = self.embedding.weight
        recent = torch.zeros(
            batch_size, self.history, param.shape[1], dtype=dtype or param.dtype, device=param.device
        )
        return SampleRNNState(0, recent, [None] * len(self.tiers), [None] * len(self.tiers))
