"""Sequence mixers: the layer inside each residual block (Mamba's selective SSM block, attention, ...).

Every mixer maps hidden states (batch, seqlen, d_model) -> (batch, seqlen, d_model) causally and
implements the recurrent-inference protocol used by generation:

- ``allocate_cache(batch_size, dtype, device, max_seqlen=None)`` returns a per-layer state object (or
  None if stateless) whose tensors are allocated once; caches that grow with the sequence are sized
  for ``max_seqlen`` tokens, the others ignore it;
- ``forward(hidden, cache=None)``: when ``cache`` is given, the state after the last position is
  written into it (prefill);
- ``step(hidden, cache)``: one token, hidden (batch, d_model) -> (batch, d_model), updating ``cache``
  in place on the device (no new tensors in the cache, positions in device tensors), so that the step
  can be replayed as a CUDA graph (:mod:`mambabench.models.generation`).
"""

from mambabench.models.mixers.mamba import Mamba, MambaCache

__all__ = ["Mamba", "MambaCache"]
