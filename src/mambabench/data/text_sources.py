"""Streaming readers for text corpora: the Pile layout and any folder of text files.

Formats, by file name: ``.jsonl`` / ``.jsonl.zst`` / ``.jsonl.gz`` (one JSON object per line, the text in
``text_field``, the Pile's ``meta.pile_set_name`` as the source name when present), ``.txt`` /
``.txt.gz`` / other ``.gz`` (one document per file). Files are read line by line through streaming
decompressors, so a corpus larger than memory works.

Bad input is never silent: a line without the text field is an error naming the file and line; an
undecodable (non-UTF-8) JSON line is skipped, and undecodable bytes in a plain-text file are dropped,
both counted per file in :class:`ReadStats` and reported as a warning.
"""

from __future__ import annotations

import gzip
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from mambabench.utils.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".jsonl.zst", ".jsonl.gz", ".json.zst")
TEXT_SUFFIXES = (".txt", ".txt.gz", ".gz")
ALL_SUFFIXES = JSONL_SUFFIXES + TEXT_SUFFIXES


class TextDataError(InputError):
    """A corpus file or folder that cannot be read as text; the message names the file and the fix."""


@dataclass
class Document:
    """One document: its text, the source (sub-corpus) name, and where it came from."""

    text: str
    source: str
    file: str
    index: int  # position of the document in its file


@dataclass
class ReadStats:
    """Counts of what reading skipped, per file (reported as one warning after a pass)."""

    skipped_lines: dict[str, int] = field(default_factory=dict)
    dropped_bytes: dict[str, int] = field(default_factory=dict)
    empty_documents: int = 0

    def warn(self) -> None:
        for counts, what in (
            (self.skipped_lines, "undecodable (non-UTF-8) JSON lines skipped"),
            (self.dropped_bytes, "undecodable bytes dropped"),
        ):
            if counts:
                detail = ", ".join(f"'{f}': {n}" for f, n in sorted(counts.items()))
                warnings.warn(f"{sum(counts.values())} {what} ({detail})", stacklevel=2)


def is_text_file(path: Path) -> bool:
    return path.is_file() and path.name.endswith(ALL_SUFFIXES) and not path.name.startswith(".")


def list_text_files(root: str | Path) -> list[Path]:
    """The corpus files under ``root`` (a file or a folder, searched recursively), sorted by path."""
    root = Path(root)
    if not root.exists():
        raise TextDataError(
            f"text corpus '{root}' does not exist; prepare one with "
            f"'python scripts/prepare_data.py pile' or set data.root=<folder of text files>"
        )
    if root.is_file():
        if not root.name.endswith(ALL_SUFFIXES):
            raise TextDataError(
                f"'{root}' is not a text corpus file; known formats: {', '.join(ALL_SUFFIXES)}"
            )
        return [root]
    files = sorted(
        p
        for p in root.rglob("*")
        if is_text_file(p) and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise TextDataError(
            f"no text files ({', '.join(ALL_SUFFIXES)}) under '{root}'; prepare a corpus with "
            f"'python scripts/prepare_data.py pile' or point data.root at one"
        )
    return files


def _open_binary(path: Path) -> IO[bytes]:
    if path.name.endswith(".zst"):
        try:
            import zstandard
        except ImportError:
            raise TextDataError(
                f"'{path}' is zstd-compressed; install zstandard (pip install zstandard)"
            ) from None
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True))
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def _iter_jsonl(path: Path, text_field: str, stats: ReadStats) -> Iterator[Document]:
    default_source = path.name.split(".")[0]
    index = 0
    with _open_binary(path) as handle:
        for line_no, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                stats.skipped_lines[str(path)] = stats.skipped_lines.get(str(path), 0) + 1
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise TextDataError(
                    f"line {line_no} of '{path}' is not valid JSON ({err.msg}); "
                    f"each line of a .jsonl file must be one JSON object"
                ) from None
            if not isinstance(record, dict) or text_field not in record:
                keys = ", ".join(record) if isinstance(record, dict) else type(record).__name__
                raise TextDataError(
                    f"line {line_no} of '{path}' has no '{text_field}' field (keys: {keys}); "
                    f"set data.text_field to the field that holds the text"
                )
            text = record[text_field]
            if not isinstance(text, str):
                raise TextDataError(
                    f"line {line_no} of '{path}': '{text_field}' is a {type(text).__name__}, not a string"
                )
            meta = record.get("meta")
            source = meta.get("pile_set_name", default_source) if isinstance(meta, dict) else default_source
            if not text:
                stats.empty_documents += 1
                continue
            yield Document(text, str(source), str(path), index)
            index += 1


def _iter_plain(path: Path, stats: ReadStats) -> Iterator[Document]:
    with _open_binary(path) as handle:
        raw = handle.read()
    text = raw.decode("utf-8", errors="ignore")
    dropped = len(raw) - len(text.encode("utf-8"))
    if dropped:
        stats.dropped_bytes[str(path)] = stats.dropped_bytes.get(str(path), 0) + dropped
    if not text.strip():
        stats.empty_documents += 1
        return
    yield Document(text, path.parent.name or path.name.split(".")[0], str(path), 0)


def iter_documents(
    path: str | Path, text_field: str = "text", stats: ReadStats | None = None
) -> Iterator[Document]:
    """Stream the documents of one corpus file (see the module docstring for formats and bad input)."""
    path = Path(path)
    stats = stats if stats is not None else ReadStats()
    if path.name.endswith(JSONL_SUFFIXES):
        yield from _iter_jsonl(path, text_field, stats)
    elif path.name.endswith(TEXT_SUFFIXES):
        yield from _iter_plain(path, stats)
    else:
        raise TextDataError(f"'{path}' has no known text format; known: {', '.join(ALL_SUFFIXES)}")
