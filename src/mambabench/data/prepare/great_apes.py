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
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from mambabench.data.prepare.common import (
    PrepareError,
    clean_bases,
    debian_package,
    extract_from_deb,
    open_text,
    write_fasta,
    write_manifest,
)

log = logging.getLogger(__name__)

DESCRIPTION = ("great-apes species classification for data=great_apes: <data-dir>/great_apes/{human,chimpanzee,"
               "gorilla,orangutan}.fa with disjoint chr22_train/valid/test regions, from the Ensembl chr22 "
               "alignment in Debian maffilter-examples")
PACKAGE = "maffilter-examples"
PACKAGE_MEMBER = ("usr/share/doc/maffilter/examples/Gorilla/"
                  "Compara.epo_5_catarrhini_hsap-projected.chr22.subset.nogap.cleaned_aln.maf.gz")
SPECIES = {"Hsap": "human", "Ptro": "chimpanzee", "Ggor": "gorilla", "Ppyg": "orangutan"}
REGIONS = 20


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--maf", type=Path, help="use this MAF(.gz) instead of the Debian package's")
    parser.add_argument("--regions", type=int, default=REGIONS, help="contiguous regions to split (default 20)")


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
    parts: dict[str, dict[str, list[str]]] = {code: {"train": [], "valid": [], "test": []} for code in SPECIES}
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
