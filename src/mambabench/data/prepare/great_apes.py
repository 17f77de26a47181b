"""Great-apes species classification data (``data=great_apes``): one FASTA per species.

Source: Debian ``maffilter-examples`` ships an Ensembl Compara EPO alignment of chromosome 22 for
human (Hsap), chimpanzee (Ptro), gorilla (Ggor) and orangutan (Ppyg): 9,627 blocks, about 21.6 Mb
ungapped per species, soft-masked. Gaps are removed and each species' blocks are concatenated in
human chr22 order. The alignment is cut into 20 contiguous regions of equal human length; region
``r`` goes to valid if ``r % 10 == 3``, to test if ``r % 10 == 7``, else to train. Every species gets
the same regions, so the splits are disjoint orthologous regions and no evaluation window overlaps a
training one. Written: ``<data-dir>/great_apes/<species>.fa`` with sequences ``chr22_train``,
``chr22_valid``, ``chr22_test`` (+ ``.fai``), and ``manifest.json``. Bonobo is not in any registry
package; add ``bonobo.fa`` with the same sequence names yourself and list it in ``data.species``.

``--download`` (internet) fetches the five whole-genome assemblies the paper uses from UCSC (``.2bit``:
hg38, panTro6, panPan3, gorGor6, ponAbe3), resumable and checked against UCSC's ``md5sum.txt``, and
converts each to an indexed FASTA of its assembled chromosomes (``--all-sequences`` keeps unplaced
contigs too): ``<data-dir>/great_apes_genomes/<species>.fa``. ``--fasta SPECIES=PATH`` takes assemblies
you already have (``.2bit``, ``.fa`` or ``.fa.gz``) instead; ``--url SPECIES=URL`` another source (e.g.
an Ensembl ``.fa.gz``). Train on them with chromosome splits (printed at the end, as in HyenaDNA).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import re
from pathlib import Path

from mambabench.data.prepare.common import (
    PrepareError,
    clean_bases,
    debian_package,
    extract_from_deb,
    open_text,
    read_fasta,
    write_fasta,
    write_manifest,
)
from mambabench.data.prepare.remote import fetch, read_checksum_list
from mambabench.data.prepare.species import parse_named_paths
from mambabench.data.prepare.twobit import read_2bit

log = logging.getLogger(__name__)

DESCRIPTION = (
    "great-apes species classification for data=great_apes: <data-dir>/great_apes/{human,chimpanzee,"
    "gorilla,orangutan}.fa with disjoint chr22_train/valid/test regions, from the Ensembl chr22 "
    "alignment in Debian maffilter-examples"
)
PACKAGE = "maffilter-examples"
PACKAGE_MEMBER = (
    "usr/share/doc/maffilter/examples/Gorilla/"
    "Compara.epo_5_catarrhini_hsap-projected.chr22.subset.nogap.cleaned_aln.maf.gz"
)
SPECIES = {"Hsap": "human", "Ptro": "chimpanzee", "Ggor": "gorilla", "Ppyg": "orangutan"}
REGIONS = 20
UCSC = "https://hgdownload.soe.ucsc.edu/goldenPath"
ASSEMBLIES = {
    "human": "hg38",
    "chimpanzee": "panTro6",
    "bonobo": "panPan3",
    "gorilla": "gorGor6",
    "orangutan": "ponAbe3",
}
GENOMES_DIR = "great_apes_genomes"
PRIMARY = re.compile(
    r"^chr([0-9]+[AB]?|X|Y)$"
)  # assembled chromosomes (apes: chr2A/chr2B); no chrM, _random, chrUn
# HyenaDNA's species splits hold out whole chromosomes; chr2A/chr2B (apes) and chr2 (human) stay in training
VALID_CHROMS = ["chr1", "chr3", "chr12", "chr13"]
TEST_CHROMS = ["chr5", "chr7", "chr9", "chr10", "chr11"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--maf", type=Path, help="use this MAF(.gz) instead of the Debian package's")
    parser.add_argument(
        "--regions", type=int, default=REGIONS, help="contiguous regions to split (default 20)"
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help=f"download the five whole-genome assemblies from UCSC ({', '.join(ASSEMBLIES.values())}; "
        f"~0.8 GB each as .2bit) into <data-dir>/{GENOMES_DIR}/ (internet)",
    )
    parser.add_argument(
        "--species",
        nargs="+",
        default=list(ASSEMBLIES),
        metavar="NAME",
        help=f"with --download: which of {', '.join(ASSEMBLIES)} (default all five)",
    )
    parser.add_argument(
        "--fasta",
        nargs="+",
        default=[],
        metavar="SPECIES=PATH",
        help="assemblies you already have (.2bit, .fa or .fa.gz), instead of downloading them",
    )
    parser.add_argument(
        "--url",
        nargs="+",
        default=[],
        metavar="SPECIES=URL",
        help="download this species from another URL (.2bit or .fa.gz, e.g. Ensembl)",
    )
    parser.add_argument("--mirror", default=UCSC, help=f"UCSC goldenPath base URL (default {UCSC})")
    parser.add_argument(
        "--all-sequences",
        action="store_true",
        help="keep unplaced/unlocalised contigs and chrM (default: assembled chromosomes only)",
    )


def read_maf_blocks(path: Path) -> list[dict[str, str]]:
    """Alignment blocks as {species code: ungapped sequence}, keeping blocks that have all four species,
    sorted by the human start coordinate."""
    blocks, current, order = [], {}, []

    def flush() -> None:
        if current and all(code in current for code in SPECIES):
            blocks.append(dict(current))
            order.append(current["_start"])

    with open_text(path) as handle:
        for line in handle:
            if line.startswith("a"):
                flush()
                current = {}
            elif line.startswith("s "):
                fields = line.split()
                code = fields[1].split(".")[0]
                if code in SPECIES:
                    current[code] = fields[6].replace("-", "")
                    if code == "Hsap":
                        current["_start"] = int(fields[2])
        flush()
    ranked = sorted(range(len(blocks)), key=order.__getitem__)
    return [{k: v for k, v in blocks[i].items() if k != "_start"} for i in ranked]


def split_of(region: int) -> str:
    return "valid" if region % 10 == 3 else "test" if region % 10 == 7 else "train"


def prepare(args: argparse.Namespace) -> Path:
    if getattr(args, "download", False) or getattr(args, "fasta", None) or getattr(args, "url", None):
        return prepare_genomes(args)
    out = Path(args.data_dir) / "great_apes"
    if args.maf:
        maf, source = args.maf, str(args.maf)
        if not maf.exists():
            raise PrepareError(f"--maf '{maf}' does not exist")
    else:
        deb = debian_package(PACKAGE, Path(args.deb_dir))
        maf = extract_from_deb(deb, PACKAGE_MEMBER, Path(args.deb_dir) / "great_apes_chr22.maf.gz")
        source = f"Debian {deb.name}:{PACKAGE_MEMBER}"
    blocks = read_maf_blocks(maf)
    if not blocks:
        raise PrepareError(f"no alignment block in {source} has all of {sorted(SPECIES)}")
    total = sum(len(b["Hsap"]) for b in blocks)
    parts: dict[str, dict[str, list[str]]] = {
        code: {"train": [], "valid": [], "test": []} for code in SPECIES
    }
    done = 0
    for block in blocks:
        split = split_of(min(args.regions - 1, done * args.regions // total))
        done += len(block["Hsap"])
        for code in SPECIES:
            parts[code][split].append(block[code])
    sizes = {}
    for code, name in SPECIES.items():
        records = []
        for split in ("train", "valid", "test"):
            seq, _ = clean_bases("".join(parts[code][split]), f"{name} {split}")
            records.append((f"chr22_{split}", seq))
        write_fasta(out / f"{name}.fa", records)
        sizes[name] = {rec: len(seq) for rec, seq in records}
        log.info(f"wrote {out / (name + '.fa')}: {sizes[name]}")
    write_manifest(out, {"source": source, "blocks": len(blocks), "regions": args.regions, "bases": sizes})
    return out


def _download_assembly(species: str, url: str, folder: Path) -> Path:
    """Fetch ``url`` into ``folder``, checked against the ``md5sum.txt`` published beside it when there is one."""
    name = url.rsplit("/", 1)[-1]
    sums_url = url.rsplit("/", 1)[0] + "/md5sum.txt"
    sums_path = folder / f"{name}.md5sum.txt"
    md5 = None
    try:
        sums_path.unlink(missing_ok=True)
        md5 = read_checksum_list(fetch(sums_url, sums_path)).get(name)
    except PrepareError as err:
        log.info(f"warning: no checksum list for {species} ({err}); the download cannot be verified")
    if md5 is None:
        log.info(f"warning: {sums_url} lists no checksum for {name}; the download cannot be verified")
    return fetch(url, folder / name, md5=md5)


def _assembly_records(path: Path, keep_all: bool):
    """(name, sequence) of the sequences to keep from a .2bit / .fa / .fa.gz assembly."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    records = read_2bit(path) if head in (b"\x43\x27\x41\x1a", b"\x1a\x41\x27\x43") else read_fasta(path)
    for name, seq in records:
        if keep_all or PRIMARY.match(name) or PRIMARY.match(f"chr{name}"):
            yield (name if name.startswith("chr") or keep_all else f"chr{name}"), seq


def prepare_genomes(args: argparse.Namespace) -> Path:
    """Whole-genome assemblies -> ``<data-dir>/great_apes_genomes/<species>.fa`` (+ .fai, manifest)."""
    out = Path(args.data_dir) / GENOMES_DIR
    downloads = out / "_downloads"
    own = parse_named_paths(args.fasta, "--fasta")
    urls = {}
    for item in args.url:
        name, sep, url = item.partition("=")
        if not sep or not name or not url:
            raise PrepareError(f"--url takes SPECIES=URL items, got {item!r}")
        urls[name] = url
    wanted = list(dict.fromkeys([*(args.species if args.download else []), *own, *urls]))
    unknown = [s for s in wanted if s not in ASSEMBLIES and s not in own and s not in urls]
    if unknown:
        raise PrepareError(
            f"no assembly known for {unknown}; known: {', '.join(ASSEMBLIES)} (or give --fasta/--url)"
        )
    manifest = {}
    for species in wanted:
        if species in own:
            path, source = own[species], str(own[species])
        else:
            db = ASSEMBLIES.get(species)
            url = urls.get(species) or f"{args.mirror.rstrip('/')}/{db}/bigZips/{db}.2bit"
            path, source = _download_assembly(species, url, downloads), url
        log.info(f"converting {path} -> {out / (species + '.fa')}")
        sizes: dict[str, int] = {}

        def cleaned(path=path, species=species, sizes=sizes):  # one chromosome in memory at a time
            for name, seq in _assembly_records(path, args.all_sequences):
                sizes[name] = len(seq)
                yield name, clean_bases(seq, f"{species} {name}")[0]

        records = cleaned()
        first = next(records, None)
        if first is None:
            raise PrepareError(
                f"{source} has no assembled chromosome (chr1, chr2A, ..., chrX); pass --all-sequences "
                f"to keep every sequence"
            )
        write_fasta(out / f"{species}.fa", itertools.chain([first], records))
        manifest[species] = {"source": source, "sequences": sizes}
        log.info(f"wrote {out / (species + '.fa')}: {sum(sizes.values()):,} bases in {len(sizes)} sequences")
    write_manifest(out, {"species": manifest})
    species_list = ",".join(wanted)
    log.info(
        "train on them with HyenaDNA's chromosome splits:\n  python src/train.py experiment=dna/great_apes/paper "
        f"data.species_dir={out} data.species='[{species_list}]' data.split_contigs='{{train: null, valid: "
        f"[{','.join(VALID_CHROMS)}], test: [{','.join(TEST_CHROMS)}]}}'"
    )
    return out
