"""Resumable, checksummed downloads with a progress bar (only behind a preparer's explicit ``--download``).

:func:`fetch` writes ``<dest>.part`` and continues it with an HTTP ``Range`` request, both when a
connection drops mid-transfer (retried in the same call) and when the command is run again after an
interruption. A finished file is checked against the MD5 or SHA-256 it should have before it is renamed
to ``dest``; a mismatch removes it and says so. :func:`read_checksum_list` reads the ``md5sum.txt`` lists
that UCSC publishes next to its files (``<hex>  <file name>`` per line).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import time
import urllib.error
import urllib.request
from pathlib import Path

from mambabench.data.prepare.common import PrepareError

log = logging.getLogger(__name__)

CHUNK = 1 << 20
TIMEOUT_S = 60


def file_digest(path: Path, algorithm: str) -> str:
    """Hex digest of ``path`` (``md5`` or ``sha256``), read in 1-MiB chunks."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress(total: int | None, initial: int, name: str):
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        mininterval=0.5,
        dynamic_ncols=True,
    )


def _transfer(url: str, part: Path, name: str) -> None:
    """Continue ``part`` from its current size to the end of ``url`` (one connection)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to fetch: the part file is already complete
            return
        raise
    with response:
        if have and response.status != 206:  # the server ignored the range: start again
            have = 0
        length = response.headers.get("Content-Length")
        total = int(length) + have if length is not None else None
        with open(part, "ab" if have else "wb") as out, _progress(total, have, name) as bar:
            while True:
                try:
                    block = response.read(CHUNK)
                except http.client.IncompleteRead as err:  # keep what arrived before the connection dropped
                    out.write(err.partial)
                    raise
                if not block:
                    break
                out.write(block)
                bar.update(len(block))
    if total is not None and part.stat().st_size < total:
        raise http.client.IncompleteRead(b"", total - part.stat().st_size)


def fetch(url: str, dest: Path, md5: str | None = None, sha256: str | None = None, retries: int = 5) -> Path:
    """Download ``url`` to ``dest`` unless it is already there (and matches its checksum).

    Interrupted transfers resume where they stopped (``Range``), up to ``retries`` times in this call,
    and on the next call from ``<dest>.part``. Raises :class:`PrepareError` with the fix when the server
    cannot be reached or the finished file does not match ``md5`` / ``sha256``.
    """
    dest = Path(dest)
    checks = [(alg, want.lower()) for alg, want in (("md5", md5), ("sha256", sha256)) if want]
    if dest.exists():
        if all(file_digest(dest, alg) == want for alg, want in checks):
            log.info(f"{dest} is already downloaded{' and verified' if checks else ''}")
            return dest
        log.info(f"{dest} does not match its checksum; downloading it again")
        dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    if part.exists():
        log.info(f"resuming {url} at {part.stat().st_size:,} bytes")
    else:
        log.info(f"downloading {url} -> {dest}")
    for attempt in range(retries + 1):
        try:
            _transfer(url, part, dest.name)
            break
        except urllib.error.HTTPError as err:
            raise PrepareError(
                f"{url}: HTTP {err.code} {err.reason}; check the URL (or --mirror) and retry"
            ) from None
        except (
            urllib.error.URLError,
            http.client.HTTPException,
            ConnectionError,
            TimeoutError,
            OSError,
        ) as err:
            refused = isinstance(getattr(err, "reason", err), ConnectionRefusedError)
            if attempt == retries or refused:
                raise PrepareError(
                    f"{url}: the transfer failed {1 if refused else retries + 1} time(s) ({err!r}); {part.stat().st_size if part.exists() else 0:,} "
                    f"bytes are kept in '{part}'. Run the same command again to resume"
                ) from None
            log.info(f"transfer interrupted ({type(err).__name__}); resuming ({attempt + 1}/{retries})")
            time.sleep(min(2.0**attempt, 30.0) * 0.1)
    for alg, want in checks:
        got = file_digest(part, alg)
        if got != want:
            part.unlink()
            raise PrepareError(
                f"checksum mismatch for {url}: expected {alg} {want}, got {got}. The corrupt download was deleted; "
                f"run the command again to fetch it anew (if it fails again, the server's file or checksum list "
                f"changed: check the source)"
            )
    part.rename(dest)
    if checks:
        log.info(f"verified {dest.name} ({', '.join(alg for alg, _ in checks)})")
    return dest


def read_checksum_list(path: Path) -> dict[str, str]:
    """``md5sum``-style lines (``<hex>  [*]<name>``) -> {file name: hex digest}."""
    out = {}
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out[parts[-1].lstrip("*").rsplit("/", 1)[-1]] = parts[0].lower()
    return out
