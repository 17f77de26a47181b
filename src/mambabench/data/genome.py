"""Random access to genome FASTA files and BED interval lists, with checks that name the fix.

:class:`FastaGenome` wraps ``pyfaidx`` (indexed, random access; the ``.fai`` is built on first use)
and opens the file lazily in each process, so DataLoader workers never share a file offset.
:func:`read_bed` reads a Basenji/HyenaDNA-style interval list (``chrom start end split``, 0-based,
half-open) and checks every row against the FASTA.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass
from pathlib import Path

from mambabench.utils.errors import DataNotFoundError, InputError

_GZIP_MAGIC = b"\x1f\x8b"


class GenomeDataError(InputError):
    """A genome or interval file that cannot be used as it is; the message names the file and the fix."""


def _existing_file(path: str | Path | None, kind: str, prepare_command: str) -> Path:
    """``path`` as a Path if it names an existing file; an empty path, a missing file or a directory
    gets an error naming the path and the command that prepares the file (``kind``: "FASTA", "BED")."""
    if path is None or not str(path).strip():
        raise GenomeDataError(
            f"no {kind} file given (the path is empty); prepare one with: {prepare_command}"
        )
    path = Path(path)
    if not path.exists():
        raise DataNotFoundError(str(path), prepare_command)
    if path.is_dir():
        raise GenomeDataError(
            f"{kind} path '{path}' is a directory; give the file itself (prepare one with: {prepare_command})"
        )
    return path


def check_fasta_file(path: str | Path | None, prepare_command: str) -> Path:
    """Return ``path`` if it is a readable, uncompressed FASTA; otherwise raise a clear error."""
    path = _existing_file(path, "FASTA", prepare_command)
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head == _GZIP_MAGIC:
        raise GenomeDataError(
            f"FASTA '{path}' is gzip-compressed; pyfaidx needs random access. Decompress it once: "
            f"'gunzip -k {path}' (or 'python scripts/prepare_data.py hg38 --fasta {path}' converts and indexes "
            f"it), then point data.fasta at the .fa file"
        )
    if path.stat().st_size == 0:
        raise GenomeDataError(f"FASTA '{path}' is empty; re-create it (e.g. {prepare_command})")
    return path


class FastaGenome:
    """Contigs of one FASTA file: names, lengths and ``fetch(contig, start, end)`` (0-based, half-open).

    Args:
        path: an uncompressed FASTA (an index ``<path>.fai`` is written next to it if missing).
        prepare_command: the command that creates the file, quoted when it is missing.
    """

    def __init__(
        self, path: str | Path, prepare_command: str = "python scripts/prepare_data.py hg38"
    ) -> None:
        self.path = check_fasta_file(path, prepare_command)
        self._fasta = None
        self._pid = -1
        fasta = self._open()
        self.lengths: dict[str, int] = {name: len(record) for name, record in fasta.records.items()}
        if not self.lengths:
            raise GenomeDataError(f"FASTA '{self.path}' has no sequences (no '>' header lines)")

    def _open(self):
        if self._fasta is None or self._pid != os.getpid():
            import pyfaidx

            try:
                self._fasta = pyfaidx.Fasta(str(self.path), as_raw=True, sequence_always_upper=False)
            except pyfaidx.FastaIndexingError as err:
                raise GenomeDataError(f"cannot index FASTA '{self.path}': {err}") from err
            self._pid = os.getpid()
        return self._fasta

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_fasta"], state["_pid"] = None, -1
        return state

    @property
    def names(self) -> list[str]:
        return list(self.lengths)

    def describe_contigs(self, limit: int = 8) -> str:
        names = self.names
        more = f", ... ({len(names)} in all)" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more

    def require(self, contig: str, where: str) -> int:
        """Length of ``contig``; a clear error if the FASTA does not have it."""
        if contig not in self.lengths:
            raise GenomeDataError(
                f"{where} names sequence '{contig}', but FASTA '{self.path}' has no such sequence; known: "
                f"{self.describe_contigs()}. Use a BED/FASTA pair from the same assembly (check 'chr' prefixes)"
            )
        return self.lengths[contig]

    def fetch(self, contig: str, start: int, end: int) -> str:
        """Bases ``[start, end)`` of ``contig`` as a string (soft-masking kept)."""
        length = self.lengths[contig]
        if not 0 <= start <= end <= length:
            raise GenomeDataError(
                f"{contig}:{start}-{end} is outside the sequence (length {length}) in '{self.path}'"
            )
        return self._open()[contig][start:end]


@dataclass(frozen=True)
class Interval:
    """One BED row: ``contig:[start, end)``; ``line`` is its 1-based line number in the file."""

    contig: str
    start: int
    end: int
    line: int

    def __len__(self) -> int:
        return self.end - self.start


def read_bed(path: str | Path | None, genome: FastaGenome, prepare_command: str) -> dict[str, list[Interval]]:
    """Read a BED of ``chrom start end [split]`` rows (a missing 4th column means ``train``).

    Every row is checked: integer coordinates, ``0 <= start < end <= contig length``, and a contig the
    FASTA has. Returns {split: [Interval, ...]} in file order.
    """
    path = _existing_file(path, "BED", prepare_command)
    opener = gzip.open if path.suffix == ".gz" else open
    splits: dict[str, list[Interval]] = {}
    with opener(path, "rt") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.split()
            where = f"BED '{path}' line {number}"
            if len(fields) < 3:
                raise GenomeDataError(
                    f"{where} has {len(fields)} column(s); expected 'chrom start end split'"
                )
            try:
                start, end = int(fields[1]), int(fields[2])
            except ValueError:
                raise GenomeDataError(
                    f"{where}: start/end must be integers, got {fields[1]!r} {fields[2]!r}"
                ) from None
            length = genome.require(fields[0], where)
            if not 0 <= start < end <= length:
                raise GenomeDataError(
                    f"{where}: interval {fields[0]}:{start}-{end} is outside the sequence (length {length}) or "
                    f"empty; fix the row or use the BED made for this FASTA"
                )
            split = fields[3] if len(fields) > 3 else "train"
            splits.setdefault(split, []).append(Interval(fields[0], start, end, number))
    if not splits:
        raise GenomeDataError(f"BED '{path}' has no intervals; re-create it ({prepare_command})")
    return splits
