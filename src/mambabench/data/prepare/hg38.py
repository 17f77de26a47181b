"""Human genome for next-base pretraining (``data=hg38``): ``<data_dir>/hg38/{genome.fa, genome.fa.fai, sequences.bed}``.

Sources, in order of preference of the flags:

* default (offline, registry only): Debian ``smalt-examples`` ships ``hs37chrXtrunc.fa.gz``, the first
  70 Mb of real human chromosome X (GRCh37, NCBI RefSeq NC_000023.10). It is written as ``chrX`` and
  tiled into Basenji-style 2^17-bp segments; segments with more than 10 % N are dropped; 1-Mb blocks
  of 8 segments go to train/valid/test (block % 10 == 4 -> valid, == 9 -> test, else train).
* ``--download`` (internet): the files HyenaDNA and the Mamba paper use, ``hg38.ml.fa.gz`` and
  ``sequences_human.bed`` from the Basenji bucket (UCSC hg38 with the Enformer splits).
* ``--fasta GENOME [--bed INTERVALS]``: any genome you have (gzip is decompressed once); without a BED
  the genome is tiled as above.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import shutil
from pathlib import Path

from mambabench.data.prepare.common import (
    PrepareError,
    clean_bases,
    debian_package,
    download,
    extract_from_deb,
    read_fasta,
    write_fasta,
    write_manifest,
)

log = logging.getLogger(__name__)

DESCRIPTION = (
    "human DNA for data=hg38: <data-dir>/hg38/genome.fa (+.fai) and sequences.bed (chrom start end "
    "split). Offline: 70 Mb of real human chrX from Debian smalt-examples; --download: UCSC hg38 "
    "+ Basenji splits (HyenaDNA's files); --fasta/--bed: your own genome"
)
PACKAGE = "smalt-examples"
PACKAGE_MEMBER = "usr/share/doc/smalt/test/data/hs37chrXtrunc.fa.gz"
BASENJI_FASTA_URL = "https://storage.googleapis.com/basenji_barnyard2/hg38.ml.fa.gz"
BASENJI_BED_URL = "https://storage.googleapis.com/basenji_barnyard2/sequences_human.bed"
SEGMENT = 2**17
BLOCK = 8
MAX_N_FRACTION = 0.10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--download",
        action="store_true",
        help=f"download the full hg38 ({BASENJI_FASTA_URL}, ~1 GB) and its BED (internet)",
    )
    parser.add_argument("--fasta", type=Path, help="use this genome FASTA (.fa or .fa.gz) instead")
    parser.add_argument("--bed", type=Path, help="with --fasta: its interval BED (chrom start end split)")
    parser.add_argument(
        "--segment", type=int, default=SEGMENT, help="segment length when tiling (default 2^17)"
    )
    parser.add_argument(
        "--block",
        type=int,
        default=BLOCK,
        help=f"segments per train/valid/test block when tiling (default {BLOCK}; 1 for small genomes)",
    )
    parser.add_argument(
        "--max-bases",
        type=int,
        default=0,
        help="keep only the first N bases of each sequence (0 = all), e.g. a small set to carry",
    )


def tile_bed(
    lengths_and_seqs: list[tuple[str, str]], segment: int, block_size: int = BLOCK
) -> list[tuple[str, int, int, str]]:
    """Basenji-style rows (chrom, start, end, split) tiling each sequence into ``segment``-bp pieces; blocks of
    ``block_size`` kept segments go to train/valid/test (block % 10 == 4 -> valid, == 9 -> test)."""
    rows, block = [], 0
    for name, seq in lengths_and_seqs:
        kept = 0
        for start in range(0, len(seq) - segment + 1, segment):
            piece = seq[start : start + segment]
            if (piece.count("N") + piece.count("n")) / segment > MAX_N_FRACTION:
                continue
            group = block + kept // block_size
            split = "valid" if group % 10 == 4 else "test" if group % 10 == 9 else "train"
            rows.append((name, start, start + segment, split))
            kept += 1
        block += kept // block_size + 1
    return rows


def _decompress(src: Path, dest: Path) -> Path:
    with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
        shutil.copyfileobj(fin, fout, length=1 << 20)
    return dest


def prepare(args: argparse.Namespace) -> Path:
    out = Path(args.data_dir) / "hg38"
    out.mkdir(parents=True, exist_ok=True)
    fasta, bed = out / "genome.fa", out / "sequences.bed"
    if args.download:
        gz = download(BASENJI_FASTA_URL, out / "hg38.ml.fa.gz")
        log.info(f"decompressing {gz} -> {fasta}")
        _decompress(gz, fasta)
        download(BASENJI_BED_URL, bed)
        write_fasta_index(fasta)
        write_manifest(
            out,
            {
                "source": "basenji hg38.ml.fa + sequences_human.bed",
                "urls": [BASENJI_FASTA_URL, BASENJI_BED_URL],
            },
        )
        return out
    if args.fasta:
        if not args.fasta.exists():
            raise PrepareError(f"--fasta '{args.fasta}' does not exist")
        records, source = list(read_fasta(args.fasta)), str(args.fasta)
    else:
        deb = debian_package(PACKAGE, Path(args.deb_dir))
        gz = extract_from_deb(deb, PACKAGE_MEMBER, Path(args.deb_dir) / "hs37chrXtrunc.fa.gz")
        records = [("chrX", seq) for _, seq in read_fasta(gz)]
        source = f"Debian {deb.name}:{PACKAGE_MEMBER} (GRCh37 chrX, first 70 Mb; NCBI NC_000023.10)"
    if not records or not any(seq for _, seq in records):
        raise PrepareError(f"no sequence found in {source}")
    if getattr(args, "max_bases", 0):
        records = [(name, seq[: args.max_bases]) for name, seq in records]
    records = [(name, clean_bases(seq, name)[0]) for name, seq in records]
    log.info(f"writing {fasta} ({sum(len(s) for _, s in records):,} bases in {len(records)} sequence(s))")
    write_fasta(fasta, records)
    if args.fasta and args.bed:
        shutil.copyfile(args.bed, bed)
    else:
        rows = tile_bed(records, args.segment, getattr(args, "block", BLOCK))
        if not rows:
            raise PrepareError(
                f"no {args.segment}-bp segment with <= {MAX_N_FRACTION:.0%} N in {source}; "
                f"use a smaller --segment"
            )
        bed.write_text("".join(f"{c}\t{s}\t{e}\t{split}\n" for c, s, e, split in rows))
        counts = {k: sum(r[3] == k for r in rows) for k in ("train", "valid", "test")}
        log.info(f"writing {bed}: {counts} segments of {args.segment} bp")
    write_manifest(
        out,
        {
            "source": source,
            "fasta": fasta.name,
            "bed": bed.name,
            "sequences": {name: len(seq) for name, seq in records},
        },
    )
    return out


def write_fasta_index(fasta: Path) -> None:
    import pyfaidx

    pyfaidx.Fasta(str(fasta)).close()
