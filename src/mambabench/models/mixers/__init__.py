"""Sequence mixers: the layer inside each residual block (Mamba's selective SSM block, attention, ...).

Every mixer maps hidden states (batch, seqlen, d_model) -> (batch, seqlen, d_model) causally and
implements the recurrent-inference protocol used by generation:

- ``allocate_cache(batch_size, dtype, device)`` returns a per-layer state object (or None if stateless);
- ``forward(hidden, cache=None)``: when ``cache`` is given, the state after the last position is
  written into it (prefill);
- ``step(hidden, cache)``: one token, hidden (batch, d_model) -> (batch, d_model), updating ``cache``.
"""

from mambabench.models.mixers.mamba import Mamba, MambaCache

__all__ = ["Mamba", "MambaCache"]
