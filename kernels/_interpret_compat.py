"""Compatibility shim for Triton 3.6's CPU interpreter (``TRITON_INTERPRET=1``) with numpy >= 2.4.

The interpreter keeps kernel scalars as 1-element numpy arrays and turns them into Python ints with
``int(array)``, which numpy 2.4 no longer allows for arrays of ndim > 0. Loops such as
``for tile in range(0, n_tiles)`` with a run-time bound then fail. :func:`patch` wraps the
interpreter's tensor patching so that ``__index__`` reads the single element instead. It does
nothing unless the interpreter is in use, and it is idempotent.
"""

from __future__ import annotations

import os

_done = False


def patch() -> None:
    """Install the shim if ``TRITON_INTERPRET=1`` (safe to call many times)."""
    global _done
    if _done or os.environ.get("TRITON_INTERPRET") != "1":
        return
    try:
        from triton.runtime import interpreter
    except ImportError:  # pragma: no cover - triton without the interpreter
        return
    original = getattr(interpreter, "_patch_lang_tensor", None)
    if original is None:  # pragma: no cover - other Triton versions
        _done = True
        return

    def _patch_lang_tensor(tensor, scope):  # type: ignore[no-untyped-def]
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = _patch_lang_tensor
    _done = True
