"""An offline species-classification set for ``data=species``: ``<data-dir>/species/<class>.fa`` (+ ``.fai``).

Every class is a complete real genome (or a slice of one) from a Debian package, so a fresh machine can
show the task learning without any download site:

=============  ===================  ===========================================================  =======
class          package              sequence                                                     GC
=============  ===================  ===========================================================  =======
human          smalt-examples       Homo sapiens chrX (GRCh37, NC_000023.10), cut at N runs      ~44 %
e_coli         ragout-examples      Escherichia coli K-12 MG1655, complete chromosome            50.8 %
h_pylori       ragout-examples      Helicobacter pylori G27, complete chromosome (NC_011333)     38.9 %
s_aureus       ragout-examples      Staphylococcus aureus N315, complete chromosome (NC_002745)  32.8 %
v_cholerae     ragout-examples      Vibrio cholerae O1 El Tor N16961, chromosomes I and II       47.5 %
u_maydis       maffilter-examples   Ustilago maydis (fungus), 36 contigs (not in the default)    ~54 %
=============  ===================  ===========================================================  =======

The classes differ in base composition and, more subtly, in codon usage, k-mer spectra and repeats:
short windows are often ambiguous (human vs H. pylori have nearly the same GC), long ones rarely, so
accuracy grows with the window length, as in HyenaDNA's species task. ``--max-bases`` caps each class
(the first bases of its sequences, in file order); ``--fasta NAME=PATH`` adds or replaces a class with a
FASTA you have. Human chrX is split at runs of >= 100 N into separate sequences (pieces shorter than
``--min-piece`` dropped) so that no class is recognisable by its N content.
"""

from __future__ import annotations

import argparse
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from mambabench.data.prepare.common import (
    PrepareError,
    clean_bases,
    debian_package,
    extract_from_deb,
    read_fasta,
    write_fasta,
    write_manifest,
)

log = logging.getLogger(__name__)

DESCRIPTION = (
    "offline species classification for data=species: <data-dir>/species/{human,e_coli,h_pylori,"
    "s_aureus,v_cholerae}.fa, complete genomes (human: chrX slice) from Debian ragout-examples and "
    "smalt-examples"
)


@dataclass(frozen=True)
class GenomeSource:
    """One class of the offline set: a FASTA(.gz) inside a Debian package."""

    package: str
    member: str
    description: str


RAGOUT = "usr/share/doc/ragout/examples"
SOURCES = {
    "human": GenomeSource(
        "smalt-examples",
        "usr/share/doc/smalt/test/data/hs37chrXtrunc.fa.gz",
        "Homo sapiens chrX, GRCh37 NC_000023.10, first 70 Mb",
    ),
    "e_coli": GenomeSource(
        "ragout-examples", f"{RAGOUT}/E.Coli/references/MG1655-K12.fasta.gz", "Escherichia coli K-12 MG1655"
    ),
    "h_pylori": GenomeSource(
        "ragout-examples",
        f"{RAGOUT}/H.Pylori/references/G27.fasta.gz",
        "Helicobacter pylori G27, NC_011333.1",
    ),
    "s_aureus": GenomeSource(
        "ragout-examples",
        f"{RAGOUT}/S.Aureus/references/N315.fasta.gz",
        "Staphylococcus aureus N315, NC_002745.2",
    ),
    "v_cholerae": GenomeSource(
        "ragout-examples",
        f"{RAGOUT}/V.Cholerae/references/O1_biovar.fasta.gz",
        "Vibrio cholerae O1 biovar El Tor N16961, AE003852.1 + AE003853.1",
    ),
    "u_maydis": GenomeSource(
        "maffilter-examples",
        "usr/share/doc/maffilter/examples/Umaydis/Umaydis.fasta.gz",
        "Ustilago maydis 521 (fungus)",
    ),
}
DEFAULT_CLASSES = ["human", "e_coli", "h_pylori", "s_aureus", "v_cholerae"]
DEFAULT_MAX_BASES = 5_000_000
N_RUN = re.compile(r"[Nn]{100,}")
NCBI_ID = re.compile(r"\|(?:ref|gb|emb|dbj)\|([^|]+)\|")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--classes",
        nargs="+",
        default=DEFAULT_CLASSES,
        metavar="NAME",
        help=f"classes to write, from {', '.join(SOURCES)} (default: {' '.join(DEFAULT_CLASSES)})",
    )
    parser.add_argument(
        "--fasta",
        nargs="+",
        default=[],
        metavar="NAME=PATH",
        help="add or replace a class with your own FASTA(.gz), e.g. --fasta mouse=/x/chr19.fa.gz",
    )
    parser.add_argument(
        "--max-bases",
        type=int,
        default=DEFAULT_MAX_BASES,
        help=f"at most this many bases per class (default {DEFAULT_MAX_BASES:,}; 0 = all)",
    )
    parser.add_argument(
        "--min-piece",
        type=int,
        default=20_000,
        help="drop sequences (or pieces between N runs) shorter than this (default 20,000)",
    )


def parse_named_paths(items: list[str], flag: str) -> dict[str, Path]:
    """``["name=path", ...]`` -> {name: Path}; a clear error for a malformed item or a missing file."""
    out: dict[str, Path] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise PrepareError(f"{flag} takes NAME=PATH items, got {item!r}")
        if name in out:
            raise PrepareError(f"{flag} names class '{name}' twice")
        if not Path(path).exists():
            raise PrepareError(f"{flag} {name}={path}: the file does not exist")
        out[name] = Path(path)
    return out


def split_at_n_runs(name: str, sequence: str, min_piece: int) -> list[tuple[str, str]]:
    """Pieces of ``sequence`` between runs of >= 100 N, named ``<name>_<start>``; pieces < ``min_piece`` dropped."""
    pieces, start = [], 0
    for gap in [*N_RUN.finditer(sequence), None]:
        end = gap.start() if gap else len(sequence)
        if end - start >= min_piece:
            pieces.append((f"{name}_{start}", sequence[start:end]))
        if gap:
            start = gap.end()
    return pieces


def take_bases(records: list[tuple[str, str]], max_bases: int, min_piece: int) -> list[tuple[str, str]]:
    """The first ``max_bases`` bases over ``records`` in order (0 = all), sequences shorter than ``min_piece``
    dropped (a truncated last one too)."""
    out, left = [], max_bases or float("inf")
    for name, seq in records:
        if left < min_piece:
            break
        piece = seq[: int(min(len(seq), left))]
        if len(piece) >= min_piece:
            out.append((name, piece))
            left -= len(piece)
    return out


def _class_records(name: str, path: Path, args: argparse.Namespace) -> list[tuple[str, str]]:
    records = []
    for contig, seq in read_fasta(path):
        accession = NCBI_ID.search(contig)  # gi|29165615|ref|NC_002745.2| -> NC_002745.2
        contig = accession.group(1) if accession else contig
        seq, _ = clean_bases(seq, f"{name} {contig}")
        records += split_at_n_runs(contig, seq, args.min_piece) if N_RUN.search(seq) else [(contig, seq)]
    records = take_bases(records, args.max_bases, args.min_piece)
    if not records:
        raise PrepareError(
            f"class '{name}' ({path}) has no sequence of at least --min-piece {args.min_piece} "
            f"bases; lower --min-piece or give a longer FASTA"
        )
    return records


def prepare(args: argparse.Namespace) -> Path:
    out = Path(args.data_dir) / "species"
    own = parse_named_paths(args.fasta, "--fasta")
    unknown = [c for c in args.classes if c not in SOURCES and c not in own]
    if unknown:
        raise PrepareError(
            f"unknown class(es) {unknown}; known: {', '.join(SOURCES)} (or add one with --fasta NAME=PATH)"
        )
    classes = list(dict.fromkeys([*args.classes, *own]))
    if len(classes) < 2:
        raise PrepareError(f"species classification needs at least two classes, got {classes}")
    manifest = {}
    for name in classes:
        if name in own:
            path, source = own[name], str(own[name])
        else:
            src = SOURCES[name]
            deb = debian_package(src.package, Path(args.deb_dir))
            path = extract_from_deb(deb, src.member, Path(args.deb_dir) / "species" / Path(src.member).name)
            source = f"Debian {deb.name}:{src.member} ({src.description})"
        records = _class_records(name, path, args)
        write_fasta(out / f"{name}.fa", records)
        bases = sum(len(s) for _, s in records)
        gc = sum(s.upper().count("G") + s.upper().count("C") for _, s in records) / bases
        manifest[name] = {"source": source, "bases": bases, "sequences": len(records), "gc": round(gc, 4)}
        log.info(f"wrote {out / (name + '.fa')}: {bases:,} bases in {len(records)} sequence(s), GC {gc:.1%}")
    write_manifest(
        out,
        {
            "classes": manifest,
            "max_bases": args.max_bases,
            "min_piece": args.min_piece,
            "config": f"data=species data.species='[{','.join(classes)}]'",
        },
    )
    if classes != DEFAULT_CLASSES:
        log.info(f"train on these classes with: data.species='[{','.join(classes)}]'")
    return out
