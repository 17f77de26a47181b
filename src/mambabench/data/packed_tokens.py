"""Tokenise a text corpus once into packed, memory-mapped token files with deterministic splits.

Layout of one cache folder ``<cache_dir>/<key>/``::

    train.bin  validation.bin  test.bin      all tokens of the split back to back, EOS after each document
    train.docs.npy ...                       int64 start offset of every document in its .bin
    meta.json                                dtype, vocabulary, EOS id, counts per split and per source

``uint16`` when the vocabulary fits (GPT-2, GPT-NeoX, bytes), else ``uint32``. ``meta.json`` is written
last, so a folder without it is an interrupted build and is rebuilt. The key hashes the tokenizer file,
the corpus files (relative path, size and their first and last 64 KiB: a copied corpus keeps its cache,
an edited one does not), the text field, the split fractions and the seed.

Splits are by document: a document goes to validation or test when a hash of (seed, file, position in
file) falls below the fractions, so the assignment never depends on worker scheduling or file order.
Tokenisation runs in ``workers`` processes with a bounded queue of document batches (memory stays flat
on a corpus larger than memory) and a progress bar.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import shutil
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mambabench.data.text_sources import ReadStats, TextDataError, iter_documents, list_text_files
from mambabench.data.tokenizers import TextTokenizer, load_text_tokenizer
from mambabench.utils.errors import ConfigError

SPLITS = ("train", "validation", "test")
CACHE_FORMAT = 1
META_FILE = "meta.json"
_EDGE = 1 << 16
_BATCH_DOCS = 256
_SERIAL_BYTES = 4 << 20  # corpora smaller than this (on disk) are tokenised in-process by default


def _file_digest(path: Path) -> str:
    h = hashlib.sha256(str(path.stat().st_size).encode())
    with open(path, "rb") as handle:
        h.update(handle.read(_EDGE))
        if path.stat().st_size > 2 * _EDGE:
            handle.seek(-_EDGE, os.SEEK_END)
        h.update(handle.read(_EDGE))
    return h.hexdigest()


def corpus_key(
    root: Path,
    files: list[Path],
    tokenizer: TextTokenizer,
    text_field: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
) -> str:
    """Cache key over everything that changes the packed tokens (see the module docstring)."""
    h = hashlib.sha256(
        json.dumps(
            {
                "format": CACHE_FORMAT,
                "tokenizer": tokenizer.fingerprint,
                "text_field": text_field,
                "val": val_fraction,
                "test": test_fraction,
                "seed": seed,
                "files": [
                    [str(f.relative_to(root)) if f != root else f.name, _file_digest(f)] for f in files
                ],
            },
            sort_keys=True,
        ).encode()
    )
    return h.hexdigest()[:20]


def split_of(seed: int, file_id: str, index: int, val_fraction: float, test_fraction: float) -> int:
    """0 train, 1 validation, 2 test for document ``index`` of ``file_id`` (a stable hash, not an RNG)."""
    digest = hashlib.blake2b(f"{seed}|{file_id}|{index}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "little") / 2**64
    return 1 if u < val_fraction else 2 if u < val_fraction + test_fraction else 0


# ----------------------------------------------------------------------------------------- workers
_WORKER_TOKENIZER: TextTokenizer | None = None


def _init_worker(spec: str) -> None:
    global _WORKER_TOKENIZER
    _WORKER_TOKENIZER = load_text_tokenizer(spec)


def _encode(texts: list[str]) -> list[list[int]]:
    return _WORKER_TOKENIZER.encode_batch(texts)


@dataclass
class PackedCorpus:
    """An opened cache folder: ``tokens(split)`` memory-maps one split's packed tokens."""

    folder: Path
    meta: dict[str, Any]

    @classmethod
    def open(cls, folder: str | Path) -> PackedCorpus:
        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.exists():
            raise TextDataError(f"'{folder}' is not a finished token cache (no {META_FILE}); rebuild it")
        try:
            meta = json.loads(meta_path.read_text())
            splits = {split: int(meta["splits"][split]["tokens"]) for split in SPLITS}
            if int(meta["vocab_size"]) < 1 or np.dtype(meta["dtype"]).kind != "u":
                raise ValueError(f"vocab_size {meta['vocab_size']}, dtype {meta['dtype']}")
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise TextDataError(
                f"token cache '{folder}' has a damaged {META_FILE} ({type(err).__name__}: {err}); delete the "
                f"folder, and point data.root at the text corpus to tokenise it again"
            ) from None
        missing = [f"{s}.bin" for s, n in splits.items() if n and not (folder / f"{s}.bin").is_file()]
        if missing:
            raise TextDataError(
                f"token cache '{folder}' lacks {', '.join(missing)}; copy the whole folder, or delete it and "
                f"point data.root at the text corpus to tokenise it again"
            )
        return cls(folder, meta)

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def eos_id(self) -> int:
        return int(self.meta["eos_id"])

    def num_tokens(self, split: str) -> int:
        return int(self.meta["splits"][split]["tokens"])

    def tokens(self, split: str) -> np.ndarray:
        """(num_tokens,) read-only memmap of ``split``'s packed tokens."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        n = self.num_tokens(split)
        if n == 0:
            return np.zeros(0, dtype=self.meta["dtype"])
        return np.memmap(self.folder / f"{split}.bin", dtype=self.meta["dtype"], mode="r", shape=(n,))

    def doc_starts(self, split: str) -> np.ndarray:
        return np.load(self.folder / f"{split}.docs.npy", mmap_mode="r")


def _batches(
    files: list[Path],
    root: Path,
    text_field: str,
    stats: ReadStats,
    seed: int,
    val_fraction: float,
    test_fraction: float,
) -> Iterator[tuple[list[str], list[int], list[str]]]:
    """(texts, split ids, source names) in batches of ``_BATCH_DOCS`` documents, in corpus order."""
    texts, splits, sources = [], [], []
    for path in files:
        file_id = str(path.relative_to(root)) if path != root else path.name
        for doc in iter_documents(path, text_field, stats):
            texts.append(doc.text)
            splits.append(split_of(seed, file_id, doc.index, val_fraction, test_fraction))
            sources.append(doc.source)
            if len(texts) == _BATCH_DOCS:
                yield texts, splits, sources
                texts, splits, sources = [], [], []
    if texts:
        yield texts, splits, sources


def build_packed_corpus(
    root: str | Path,
    tokenizer: str,
    cache_dir: str | Path,
    text_field: str = "text",
    val_fraction: float = 0.005,
    test_fraction: float = 0.005,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> PackedCorpus:
    """Open the cache of ``root`` tokenised with ``tokenizer`` (a name or path), building it first if
    it is missing or stale. ``workers``: tokeniser processes (None: CPU count - 1; 0: in this process)."""
    root = Path(root)
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise ConfigError(
            f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} must be in [0, 1) "
            f"and leave documents for training"
        )
    files = list_text_files(root)
    tok = load_text_tokenizer(tokenizer)
    key = corpus_key(root, files, tok, text_field, val_fraction, test_fraction, seed)
    folder = Path(cache_dir) / key
    if (folder / META_FILE).exists():
        return PackedCorpus.open(folder)
    if folder.exists():
        shutil.rmtree(folder)  # an interrupted build
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    vocab_size, eos_id = tok.vocab_size, tok.eos_id
    dtype = np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32
    outs = [open(tmp / f"{s}.bin", "wb") for s in SPLITS]
    counts = [0, 0, 0]
    starts: list[list[int]] = [[], [], []]
    per_source: dict[str, dict[str, int]] = {}
    stats = ReadStats()
    if workers is None:  # processes pay off only beyond a few MB of text
        small = sum(f.stat().st_size for f in files) < _SERIAL_BYTES
        workers = 0 if small else max(0, (os.cpu_count() or 1) - 1)
    pool = mp.get_context("spawn").Pool(workers, _init_worker, (tokenizer,)) if workers > 0 else None
    bar = _progress(progress, f"tokenising {root} ({tok.name})")

    def write(
        ids_list: list[list[int]], splits: list[int], sources: list[str], texts_bytes: list[int]
    ) -> None:
        for ids, split, source, nbytes in zip(ids_list, splits, sources, texts_bytes):
            arr = np.asarray([*ids, eos_id], dtype=dtype)
            starts[split].append(counts[split])
            counts[split] += arr.size
            outs[split].write(arr.tobytes())
            entry = per_source.setdefault(source, {"documents": 0, "tokens": 0, "bytes": 0})
            entry["documents"] += 1
            entry["tokens"] += arr.size
            entry["bytes"] += nbytes
        if bar is not None:
            bar.update(len(ids_list))
            bar.set_postfix(tokens=f"{sum(counts) / 1e6:.1f}M", refresh=False)

    try:
        pending: deque = deque()
        for texts, splits, sources in _batches(
            files, root, text_field, stats, seed, val_fraction, test_fraction
        ):
            nbytes = [len(t.encode("utf-8")) for t in texts]
            if pool is None:
                write(tok.encode_batch(texts), splits, sources, nbytes)
                continue
            pending.append((pool.apply_async(_encode, (texts,)), splits, sources, nbytes))
            while len(pending) > 2 * workers:
                result, *rest = pending.popleft()
                write(result.get(), *rest)
        while pending:
            result, *rest = pending.popleft()
            write(result.get(), *rest)
    finally:
        for out in outs:
            out.close()
        if pool is not None:
            pool.terminate()
        if bar is not None:
            bar.close()
    stats.warn()
    if counts[0] == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        skipped = sum(stats.skipped_lines.values())
        raise TextDataError(
            f"text corpus '{root}' gave no training documents ({len(files)} file(s); {stats.empty_documents} empty "
            f"document(s), {skipped} undecodable line(s) skipped); check data.root and data.text_field"
        )
    for i, split in enumerate(SPLITS):
        np.save(tmp / f"{split}.docs.npy", np.asarray(starts[i], dtype=np.int64))
    meta = {
        "format": CACHE_FORMAT,
        "key": key,
        "root": str(root),
        "tokenizer": tok.name,
        "tokenizer_fingerprint": tok.fingerprint,
        "vocab_size": vocab_size,
        "eos_id": eos_id,
        "dtype": np.dtype(dtype).name,
        "text_field": text_field,
        "seed": seed,
        "val_fraction": val_fraction,
        "test_fraction": test_fraction,
        "files": len(files),
        "splits": {s: {"documents": len(starts[i]), "tokens": counts[i]} for i, s in enumerate(SPLITS)},
        "sources": per_source,
        "skipped": {
            "undecodable_lines": stats.skipped_lines,
            "undecodable_bytes": stats.dropped_bytes,
            "empty_documents": stats.empty_documents,
        },
    }
    (tmp / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
    tmp.rename(folder)
    return PackedCorpus.open(folder)


def _progress(enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(desc=desc, unit=" docs", dynamic_ncols=True)
