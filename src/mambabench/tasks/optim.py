"""Optimizer parameter groups that honour the per-parameter hooks of s4 and mamba.

- ``p._no_weight_decay = True`` (Mamba's A_log and D): no weight decay.
- ``p._optim = {"lr": ..., "weight_decay": ...}`` (s4's SSM parameters): a group of its own with those settings.
- Biases and other 1-D parameters (norm weights, skip vectors): no weight decay. "1-D" is the shape the
  parameter was built with (:func:`~mambabench.utils.built_shapes.built_shape`, recorded by the task before
  a strategy wraps the model):
  FSDP hands the optimizer flat 1-D shards of every parameter.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mambabench.utils.built_shapes import built_shape


def build_param_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split the trainable parameters of ``module`` into optimizer groups (tied weights counted once)."""
    decay, no_decay, special = [], [], {}
    seen: set[int] = set()
    for _, param in module.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        hook = getattr(param, "_optim", None)
        if hook:
            special.setdefault(tuple(sorted(hook.items())), []).append(param)
        elif getattr(param, "_no_weight_decay", False) or len(built_shape(param)) < 2:
            no_decay.append(param)
        else:
            decay.append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "group_name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "group_name": "no_decay"},
    ]
    for settings, params in special.items():
        group = {"params": params, "weight_decay": weight_decay, "group_name": "hook"}
        group.update(dict(settings))
        groups.append(group)
    return [g for g in groups if g["params"]]
