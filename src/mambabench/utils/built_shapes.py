"""The shape each parameter was built with, kept on the parameter before a strategy reshapes it.

FSDP flattens every parameter and hands each rank a 1-D shard, so ``param.shape`` no longer tells a
matrix from a bias. The task records the built shapes once, before the strategy wraps the model
(:meth:`~mambabench.tasks.base.BaseTask.configure_model`); the optimizer groups (no weight decay for
1-D parameters) and the FLOP count (a weight's full size) read them back with :func:`built_shape`.
"""

from __future__ import annotations

from torch import nn

_ATTRIBUTE = "_built_shape"


def record_built_shapes(module: nn.Module) -> None:
    """Store ``tuple(param.shape)`` on every parameter of ``module`` (call before any wrapping)."""
    for param in module.parameters():
        setattr(param, _ATTRIBUTE, tuple(param.shape))


def built_shape(param: nn.Parameter) -> tuple[int, ...]:
    """The shape ``param`` was built with, or its current shape where none was recorded."""
    return tuple(getattr(param, _ATTRIBUTE, param.shape))
