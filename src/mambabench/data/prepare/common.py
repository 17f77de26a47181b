"""Helpers shared by the preparers: Debian packages without dpkg/root, FASTA writing, downloads."""

from __future__ import annotations

import gzip
import io
import json
import logging
import shutil
import subprocess
import tarfile
import urllib.request
from collections.abc import Iterable
from pathlib import Path

log = logging.getLogger(__name__)

DNA_LINE_WIDTH = 60


class PrepareError(RuntimeError):
    """Preparation cannot go on; the message says what is missing and how to get it."""


def debian_package(name: str, deb_dir: Path) -> Path:
    """Path to ``<deb_dir>/<name>_*.deb``; fetched with ``apt-get download`` (no root needed) if absent."""
    deb_dir.mkdir(parents=True, exist_ok=True)
    found = sorted(deb_dir.glob(f"{name}_*.deb"))
    if found:
        return found[-1]
    log.info(f"fetching Debian package {name} into {deb_dir} (apt-get download)")
    try:
        subprocess.run(["apt-get", "download", name], cwd=deb_dir, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise PrepareError(
            f"apt-get is not available to fetch Debian package '{name}'. On a Debian/Ubuntu machine run "
            f"'apt-get download {name}' and pass its folder with --deb-dir, or use --download (internet)"
        ) from None
    except subprocess.CalledProcessError as err:
        raise PrepareError(
            f"'apt-get download {name}' failed: {err.stderr.strip()[-400:]}. Run 'apt-get update' once (as root) "
            f"and retry, or download the .deb elsewhere and pass --deb-dir"
        ) from None
    found = sorted(deb_dir.glob(f"{name}_*.deb"))
    if not found:
        raise PrepareError(f"apt-get download {name} left no {name}_*.deb in {deb_dir}")
    return found[-1]


def _ar_members(data: bytes) -> Iterable[tuple[str, bytes]]:
    if not data.startswith(b"!<arch>\n"):
        raise PrepareError("not a Debian package (ar archive)")
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        yield name, data[pos + 60 : pos + 60 + size]
        pos += 60 + size + (size % 2)


def extract_from_deb(deb: Path, member: str, dest: Path) -> Path:
    """Copy file ``member`` (e.g. ``usr/share/doc/x/y.fa.gz``) out of ``deb`` to ``dest`` (pure Python)."""
    for name, payload in _ar_members(deb.read_bytes()):
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(payload), mode="r:*") as tar:
                for info in tar.getmembers():
                    if info.name.lstrip("./") == member.lstrip("/"):
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        with tar.extractfile(info) as src, open(dest, "wb") as out:
                            shutil.copyfileobj(src, out)
                        return dest
            raise PrepareError(f"{deb.name} has no file {member}")
    raise PrepareError(f"{deb.name} has no data.tar member")


def download(url: str, dest: Path) -> Path:
    """Download ``url`` to ``dest`` (skipped when it exists). Only used behind an explicit --download flag."""
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    log.info(f"downloading {url} -> {dest}")
    tmp = dest.with_suffix(dest.suffix + ".part")
    with urllib.request.urlopen(url) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)
    tmp.rename(dest)
    return dest


def open_text(path: Path):
    """Open a text file, transparently decompressing gzip."""
    with open(path, "rb") as handle:
        gz = handle.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gz else open(path)


def read_fasta(path: Path) -> Iterable[tuple[str, str]]:
    """(name, sequence) per record of a (possibly gzipped) FASTA; the name is the header's first word."""
    name, parts = None, []
    with open_text(path) as handle:
        for line in handle:
            if line.startswith(">"):
                if name is not None:
                    yield name, "".join(parts)
                name, parts = (line[1:].split() or [""])[0], []
            else:
                parts.append(line.strip())
    if name is not None:
        yield name, "".join(parts)


_VALID = set("ACGTNacgtn")


def clean_bases(sequence: str, where: str) -> tuple[str, int]:
    """Replace characters other than ACGTN (either case) by N; returns (sequence, how many were replaced)."""
    bad = set(sequence) - _VALID
    if not bad:
        return sequence, 0
    count = sum(sequence.count(ch) for ch in bad)
    for ch in bad:
        sequence = sequence.replace(ch, "n" if ch.islower() else "N")
    log.info(f"  {where}: {count} non-ACGTN characters ({''.join(sorted(bad))[:20]}) written as N")
    return sequence, count


def write_fasta(path: Path, records: Iterable[tuple[str, str]]) -> None:
    """Write records with 60-column lines, then build the pyfaidx ``.fai`` index."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as out:
        for name, seq in records:
            out.write(f">{name}\n")
            for i in range(0, len(seq), DNA_LINE_WIDTH):
                out.write(seq[i : i + DNA_LINE_WIDTH] + "\n")
    fai = Path(str(path) + ".fai")
    fai.unlink(missing_ok=True)
    import pyfaidx

    pyfaidx.Fasta(str(path)).close()


def write_manifest(folder: Path, payload: dict) -> None:
    (folder / "manifest.json").write_text(json.dumps(payload, indent=2) + "\n")
