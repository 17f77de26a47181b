"""Command-line overrides checked against what reads them, so that a mistake is caught before any work.

* :func:`check_override_types`: a value given on the command line for a key of an object built from
  the config (``model.d_model=abc``, ``trainer.max_steps=1e3x``) must fit the type hint of the
  parameter it feeds (``LMHeadModel(d_model: int)``), else one error naming the key, the expected type
  and an example.
* :func:`where_is`: for a key that does not exist where it was given (``d_model=32``), the places where
  a key of that name does live (``model.d_model``), or the closest names at that place.
"""

from __future__ import annotations

import collections.abc
import difflib
import inspect
import types
import typing
from typing import Any

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from mambabench.utils.errors import ConfigError

_NOT_PARAMETERS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


def _type_hints(target: Any) -> dict[str, Any]:
    """The parameter type hints of a class's ``__init__`` or a function (empty when they cannot be read)."""
    fn = target.__init__ if inspect.isclass(target) else target
    try:
        return typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 (hints naming types only imported for type checking)
        return {}


def fits(value: Any, hint: Any) -> bool:
    """Whether a config value can feed a parameter typed ``hint`` (lenient where the hint is not a plain
    type: classes, callables and protocols accept anything; ``None`` is always accepted)."""
    if value is None or hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(fits(value, arg) for arg in typing.get_args(hint))
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (float, torch.Tensor):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return False
    container = origin or hint
    if container in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple, ListConfig))
    if container in (dict, collections.abc.Mapping):
        return isinstance(value, (dict, DictConfig))
    return True


def describe(hint: Any) -> str:
    """``int | None`` -> ``an integer``; ``Literal['a', 'b'] | Literal[1]`` -> ``one of 'a', 'b', 1``."""
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    args = tuple(a for a in args if a is not type(None))
    literals = [v for a in args if typing.get_origin(a) is typing.Literal for v in typing.get_args(a)]
    others = [a for a in args if typing.get_origin(a) is not typing.Literal]
    names = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        torch.Tensor: "a number",
    }
    parts = []
    for arg in others:
        if arg in names:
            parts.append(names[arg])
        elif (typing.get_origin(arg) or arg) in (list, tuple, collections.abc.Sequence):
            parts.append("a list like [1,2]")
        else:
            parts.append(getattr(arg, "__name__", str(arg)))
    if literals:
        parts.append("one of " + ", ".join(repr(v) for v in literals))
    return " or ".join(dict.fromkeys(parts))


def _override_keys(overrides: list[str]) -> dict[str, str]:
    """Key -> the override as typed, for plain ``key=value`` overrides (a choice of a config group such
    as ``model=hyena`` is not a value and is left out; so are Hydra's own keys)."""
    keys = {}
    for item in overrides:
        if "=" not in item or item.startswith("~"):
            continue
        key = item.split("=", 1)[0].lstrip("+")
        if "/" not in key and not key.startswith("hydra."):
            keys[key] = item.lstrip("+")
    return keys


def _hint_from_target(cfg: DictConfig, key: str) -> tuple[Any, str] | None:
    """(type hint, owner name) of ``key`` when its node is built from a ``_target_`` with a hint for it."""
    if "." not in key:
        return None
    parent_key, name = key.rsplit(".", 1)
    node = OmegaConf.select(cfg, parent_key, throw_on_missing=False)
    if not isinstance(node, DictConfig) or "_target_" not in node or name in _NOT_PARAMETERS:
        return None
    try:
        target = get_object(str(node._target_))
    except Exception:  # noqa: BLE001 (an unknown target fails later with Hydra's own message)
        return None
    hint = _type_hints(target).get(name)
    return (hint, f"{name} of {getattr(target, '__name__', target)}") if hint is not None else None


def _hint_from_default(defaults: DictConfig | None, key: str) -> tuple[Any, str] | None:
    """(type, description) of a plain key's value in the config composed without value overrides."""
    if defaults is None:
        return None
    try:
        default = OmegaConf.select(defaults, key, throw_on_missing=False)
    except Exception:  # noqa: BLE001 (interpolations that only resolve inside a run)
        return None
    if isinstance(default, bool):
        return bool, f"{key} (default {str(default).lower()})"
    if isinstance(default, (int, float)):
        return float, f"{key} (default {default})"
    return None


def check_override_types(cfg: DictConfig, overrides: list[str], defaults: DictConfig | None = None) -> None:
    """Raise :class:`ConfigError` for the first override whose value does not fit what reads it: the
    type hint of the parameter it feeds (keys of nodes with ``_target_``), else the type of its value in
    ``defaults``, the config composed without value overrides (plain numbers and switches)."""
    for key, typed in _override_keys(overrides).items():
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
        except Exception:  # noqa: BLE001 (a value that does not resolve fails later with its own message)
            continue
        if isinstance(value, DictConfig):
            continue
        expected = _hint_from_target(cfg, key) or _hint_from_default(defaults, key)
        if expected is not None and not fits(value, expected[0]):
            raise ConfigError(f"{typed} does not fit: {expected[1]} takes {describe(expected[0])}")


def dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key of a config as a dotted path, nodes and leaves (lists are not entered)."""
    keys = []
    if isinstance(node, DictConfig):
        for key in node.keys():
            path = f"{prefix}{key}"
            keys.append(path)
            keys.extend(dotted_keys(node._get_node(key), f"{path}."))
    return keys


def where_is(key: str, cfg: DictConfig) -> tuple[list[str], list[str]]:
    """Where ``key`` could have been meant: (paths whose last part is the key's last part, close names
    at the key's own place). ``d_model`` -> (["model.d_model"], []);
    ``model.d_modle`` -> ([], ["model.d_model"])."""
    all_keys = [k for k in dotted_keys(cfg) if not k.startswith("hydra")]
    name = key.rsplit(".", 1)[-1]
    same_name = [k for k in all_keys if k.rsplit(".", 1)[-1] == name and k != key]
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [k.rsplit(".", 1)[-1] for k in all_keys if (k.rsplit(".", 1)[0] if "." in k else "") == parent]
    names = difflib.get_close_matches(name, [s for s in siblings if not s.startswith("_")], n=3, cutoff=0.75)
    close = [f"{parent}.{n}" if parent else n for n in names]
    return same_name, close
