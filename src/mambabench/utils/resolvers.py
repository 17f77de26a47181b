"""OmegaConf resolvers used by the configs; importing this module registers them (idempotent)."""

from __future__ import annotations

import math

from omegaconf import OmegaConf


def register_resolvers() -> None:
    """Register ``mb.if_null`` (a value or a fallback), ``mb.div_up``, ``mb.mul`` and ``mb.pow2_batch``
    (the largest power-of-two batch of ``seq_len`` sequences within ``tokens`` tokens, at least 1)."""
    resolvers = {
        "mb.if_null": lambda value, fallback: fallback if value in (None, "None", "null", "") else value,
        "mb.div_up": lambda a, b: int(math.ceil(int(a) / int(b))),
        "mb.mul": lambda a, b: a * b,
        "mb.pow2_batch": lambda tokens, seq_len: 2 ** max(0, int(math.floor(math.log2(int(tokens) / int(seq_len))))),
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()
