"""Read UCSC ``.2bit`` genome files (the format of ``hgdownload.soe.ucsc.edu/goldenPath/<db>/bigZips/<db>.2bit``).

Layout (all integers in the file's byte order, told by the signature ``0x1A412743``): a 16-byte header
(signature, version 0 or 1, sequence count, reserved), an index of (name length, name, offset; the
offset is 64-bit in version 1), then per sequence: DNA size, N-block count, starts, sizes, mask-block
count, starts, sizes, a reserved word and the bases packed four per byte, first base in the high bits,
``T C A G`` = 0..3. N blocks become ``N``; mask blocks (soft-masked repeats) become lower case.
Decoding is vectorised with numpy over a memory map, so a 250-Mb chromosome takes about a second.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mambabench.data.prepare.common import PrepareError

SIGNATURE = 0x1A412743
_BASES = np.frombuffer(b"TCAG", dtype=np.uint8)


def _byte_order(path: Path, head: bytes) -> str:
    if len(head) < 16:
        raise PrepareError(f"'{path}' is too short to be a .2bit file")
    for order in ("<", ">"):
        if int(np.frombuffer(head[:4], dtype=f"{order}u4")[0]) == SIGNATURE:
            return order
    raise PrepareError(f"'{path}' is not a .2bit file (signature {head[:4].hex()}, expected {SIGNATURE:08x})")


def read_2bit_index(path: Path) -> tuple[np.memmap, str, list[tuple[str, int]]]:
    """(memory map, byte order, [(sequence name, record offset), ...]) of a .2bit file."""
    data = np.memmap(path, dtype=np.uint8, mode="r")
    order = _byte_order(path, bytes(data[:16]))
    version, count = (int(v) for v in np.frombuffer(bytes(data[4:12]), dtype=f"{order}u4"))
    if version not in (0, 1):
        raise PrepareError(f"'{path}': .2bit version {version} is not supported (0 or 1)")
    width = 8 if version == 1 else 4
    index, pos = [], 16
    try:
        for _ in range(count):
            size = int(data[pos])
            name = bytes(data[pos + 1 : pos + 1 + size]).decode()
            pos += 1 + size
            offset = int(np.frombuffer(bytes(data[pos : pos + width]), dtype=f"{order}u{width}")[0])
            pos += width
            index.append((name, offset))
    except (IndexError, ValueError, UnicodeDecodeError) as err:
        raise PrepareError(f"'{path}': the .2bit index is truncated or corrupt ({err})") from None
    return data, order, index


def _words(data: np.memmap, order: str, pos: int, count: int) -> tuple[np.ndarray, int]:
    end = pos + 4 * count
    if end > data.size:
        raise PrepareError("a .2bit record runs past the end of the file (truncated download?)")
    return np.frombuffer(bytes(data[pos:end]), dtype=f"{order}u4").astype(np.int64), end


def decode_record(data: np.memmap, order: str, offset: int) -> str:
    """The bases of the record at ``offset`` (N for N blocks, lower case for soft-masked blocks)."""
    (size,), pos = _words(data, order, offset, 1)
    (n_count,), pos = _words(data, order, pos, 1)
    n_starts, pos = _words(data, order, pos, n_count)
    n_sizes, pos = _words(data, order, pos, n_count)
    (m_count,), pos = _words(data, order, pos, 1)
    m_starts, pos = _words(data, order, pos, m_count)
    m_sizes, pos = _words(data, order, pos, m_count)
    pos += 4  # reserved
    packed_len = (int(size) + 3) // 4
    if pos + packed_len > data.size:
        raise PrepareError("a .2bit record runs past the end of the file (truncated download?)")
    packed = np.asarray(data[pos : pos + packed_len])
    codes = np.stack([(packed >> shift) & 3 for shift in (6, 4, 2, 0)], axis=1).reshape(-1)[: int(size)]
    bases = _BASES[codes]
    for start, length in zip(n_starts, n_sizes):
        bases[start : start + length] = ord("N")
    for start, length in zip(m_starts, m_sizes):
        bases[start : start + length] |= 0x20  # ASCII lower case
    return bases.tobytes().decode("ascii")


def read_2bit(path: Path, keep: set[str] | None = None) -> Iterator[tuple[str, str]]:
    """(name, sequence) per record of a .2bit file, in file order; only names in ``keep`` if given."""
    data, order, index = read_2bit_index(Path(path))
    for name, offset in index:
        if keep is None or name in keep:
            yield name, decode_record(data, order, offset)
