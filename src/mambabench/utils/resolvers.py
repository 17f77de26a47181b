"""OmegaConf resolvers used by the configs; importing this module registers them (idempotent)."""

from __future__ import annotations

import math

from omegaconf import OmegaConf


def scaling_layers(n_layer: int, mixer_target: str, mlp_target: str | None) -> int:
    """Blocks of an architecture at a scaling-law size given in Transformer layers (mamba-paper.md §3.1):
    blocks without an MLP (Mamba, hybrids) take two per Transformer layer (2 x 6D^2 = 12D^2 parameters),
    Hyena / H3 take 1.5x (their MLP expansion is 2), the others one."""
    target = str(mixer_target).lower()
    if mlp_target in (None, "None", "null", ""):
        return 2 * int(n_layer)
    if "hyena" in target or "h3" in target:
        return int(round(1.5 * int(n_layer)))
    return int(n_layer)


def register_resolvers() -> None:
    """Register ``mb.if_null`` (a value or a fallback), ``mb.div_up``, ``mb.mul``, ``mb.pow2_batch``
    (the largest power-of-two batch of ``seq_len`` sequences within ``tokens`` tokens, at least 1) and
    ``mb.scaling_layers`` (:func:`scaling_layers`)."""
    resolvers = {
        "mb.if_null": lambda value, fallback: fallback if value in (None, "None", "null", "") else value,
        "mb.div_up": lambda a, b: int(math.ceil(int(a) / int(b))),
        "mb.mul": lambda a, b: a * b,
        "mb.pow2_batch": lambda tokens, seq_len: (
            2 ** max(0, int(math.floor(math.log2(int(tokens) / int(seq_len)))))
        ),
        "mb.scaling_layers": scaling_layers,
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


register_resolvers()
