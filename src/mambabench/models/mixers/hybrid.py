"""Hybrid stacks: one mixer kind at most layers, another (usually attention) every few layers.

``interleave`` is given to :class:`~mambabench.models.lm.LMHeadModel` as its ``mixer`` partial, so
the ratio is a config key (``model.mixer.every``) instead of a hand-written ``layer_mixers`` map.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn


def interleave(
    d_model: int,
    layer_idx: int,
    primary: Callable[..., nn.Module],
    secondary: Callable[..., nn.Module],
    every: int = 4,
    offset: int | None = None,
) -> nn.Module:
    """Build layer ``layer_idx``: ``secondary`` at layers offset, offset + every, ..., else ``primary``.

    Args:
        d_model: width, passed on.
        primary, secondary: partials called as ``f(d_model=..., layer_idx=...)`` (e.g. Mamba, MHA).
        every: one secondary layer per ``every`` layers (every - 1 primary layers between them).
        offset: index of the first secondary layer; default every - 1 (last layer of each group).
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    offset = every - 1 if offset is None else offset
    use_secondary = layer_idx >= offset and (layer_idx - offset) % every == 0
    return (secondary if use_secondary else primary)(d_model=d_model, layer_idx=layer_idx)
