"""Checkpoints that survive crashes: atomic writes, corruption detection, the newest good one to resume.

A checkpoint is written to a temporary file in the same folder, flushed to disk (``fsync``) and renamed
over the target, so a process killed mid-write (``kill -9``, preemption, a full disk) leaves either the
old file or the new one, never half of one. A file that is damaged anyway (copied partially, truncated
by a full disk on another machine) fails :func:`read_checkpoint` with an error naming the file, and
:func:`newest_good_checkpoint` skips it in favour of the previous good one.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor

from mambabench.utils.errors import InputError

CHECKPOINT_DIR = "checkpoints"


class CheckpointError(InputError):
    """A checkpoint file that cannot be used; the message names the file and what to do."""


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open folders; the rename is still atomic there
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save(obj, path)`` via ``<path>.tmp-<pid>`` + fsync + rename: readers see old or new, never partial."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(path.parent)


def read_checkpoint(path: str | Path, mmap: bool = False, lightning: bool = True) -> dict[str, Any]:
    """Load a Lightning checkpoint on CPU, or raise :class:`CheckpointError` naming the file.

    ``mmap=True`` reads only the index (tensors are paged in on use): a cheap integrity check.
    ``lightning=False`` accepts any saved dict (Lightning also passes bare weights through files)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(
            p.name
            for p in (path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path).glob("*.ckpt")
        )
        hint = f"; it holds {', '.join(found)}" if found else ""
        raise CheckpointError(
            f"'{path}' is a directory, not a checkpoint file: pass ckpt_path=<run dir>/{CHECKPOINT_DIR}/last.ckpt{hint}"
        )
    if not path.exists():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"checkpoint '{path}' is empty (0 bytes): the write was interrupted; "
            "delete it and resume from an earlier checkpoint"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as err:  # torch raises RuntimeError, EOFError, UnpicklingError, ... for damaged files
        raise CheckpointError(
            f"checkpoint '{path}' is truncated or corrupt ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "delete it and resume from an earlier checkpoint (resume=auto picks the newest good one)"
        ) from err
    if lightning and (not isinstance(checkpoint, dict) or "state_dict" not in checkpoint):
        raise CheckpointError(
            f"'{path}' is not a Lightning checkpoint (no 'state_dict'); pass a .ckpt written by training"
        )
    return checkpoint


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O with :func:`atomic_save` for writes and :func:`read_checkpoint` for
    reads, so a damaged file is reported by name instead of as a pickle traceback."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        atomic_save(checkpoint, path)

    def load_checkpoint(
        self, path: str | Path, map_location: Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        return read_checkpoint(path, lightning=False)


def newest_good_checkpoint(run_dir: str | Path) -> Path | None:
    """The readable checkpoint of ``<run_dir>/checkpoints`` with the highest global step (newest file on a
    tie); damaged ones are skipped with a warning naming them. None if there is no checkpoint."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    candidates = (
        sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
        if folder.is_dir()
        else []
    )
    best: tuple[int, Path] | None = None
    for path in candidates:
        try:
            step = int(read_checkpoint(path, mmap=True).get("global_step", 0))
        except CheckpointError as err:
            warnings.warn(f"{err}; skipping it", stacklevel=2)
            continue
        if best is None or step > best[0]:
            best = (step, path)
    return best[1] if best else None


def state_dict_mismatch(saved: dict[str, Tensor], expected: dict[str, Tensor], limit: int = 12) -> list[str]:
    """Human-readable differences between a checkpoint's state dict and a model's: keys only in one,
    and keys whose shapes differ (at most ``limit`` lines per kind). Empty when they match."""
    lines = []
    shapes = [
        f"{k}: checkpoint {tuple(saved[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in saved
        if k in expected and hasattr(saved[k], "shape") and saved[k].shape != expected[k].shape
    ]
    for title, items in (
        ("shapes differ", shapes),
        ("only in the checkpoint", [k for k in saved if k not in expected]),
        ("only in the model", [k for k in expected if k not in saved]),
    ):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            lines.append(f"{title}: " + "; ".join(items[:limit]) + more)
    return lines


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself if it is a file; for a run directory (or its ``checkpoints`` folder), its
    ``last.ckpt``, else its newest good checkpoint. Raises :class:`CheckpointError` saying what to pass."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise CheckpointError(
            f"checkpoint '{path}' does not exist; pass ckpt_path=<run dir>/{CHECKPOINT_DIR}/last.ckpt"
        )
    run_dir = path.parent if path.name == CHECKPOINT_DIR else path
    last = run_dir / CHECKPOINT_DIR / "last.ckpt"
    found = last if last.is_file() else newest_good_checkpoint(run_dir)
    if found is None:
        raise CheckpointError(
            f"'{path}' is a directory without checkpoints; pass ckpt_path=<run dir>/"
            f"{CHECKPOINT_DIR}/<file>.ckpt of a run that has saved one"
        )
    return found
