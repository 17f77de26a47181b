#!/usr/bin/env python3
"""How much species signal do held-out windows carry? An order-k Markov naive-Bayes baseline for
``data=great_apes`` (or any species folder): one k-mer model per species, fitted on the training
sequences, classifies random windows of the test sequences by likelihood. It needs no GPU and runs in
about a minute; if it sits at chance, a small network trained for minutes has little to find either.

    python scripts/dna_species_baseline.py                          # data/great_apes, k=4,6,8, L=1024,4096,16384
    python scripts/dna_species_baseline.py --k 6 --lengths 256 1024 --keep-case   # soft-masking as letters
    python scripts/dna_species_baseline.py --species-dir data/species --fractions \
        --species human e_coli h_pylori s_aureus v_cholerae --k 2 4 6 --lengths 32 64 128 256 1024 --windows 300

Prints a markdown table: accuracy and per-class accuracy for every (k, length).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from mambabench.data.dna import SpeciesDataModule  # noqa: E402


def encode(sequence: str, keep_case: bool) -> np.ndarray:
    """Bases -> codes 0..3 (A C G T; +4 for lower case with ``keep_case``); anything else -> -1."""
    lut = np.full(256, -1, dtype=np.int64)
    for i, base in enumerate("ACGT"):
        lut[ord(base)] = i
        lut[ord(base.lower())] = i + 4 if keep_case else i
    return lut[np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)]


def kmers(codes: np.ndarray, k: int, alphabet: int) -> np.ndarray:
    """Ids of the k-mers of ``codes`` that contain no unknown base."""
    n = codes.size - k + 1
    if n <= 0:
        return np.zeros(0, dtype=np.int64)
    ids, valid = np.zeros(n, dtype=np.int64), np.ones(n, dtype=bool)
    for j in range(k):
        part = codes[j : j + n]
        valid &= part >= 0
        ids = ids * alphabet + np.maximum(part, 0)
    return ids[valid]


def fit(codes: np.ndarray, k: int, alphabet: int) -> np.ndarray:
    """log P(last base | k-1 previous) for every k-mer id, add-one smoothed."""
    counts = np.bincount(kmers(codes, k, alphabet), minlength=alphabet**k).astype(np.float64) + 1.0
    counts = counts.reshape(-1, alphabet)
    return np.log(counts / counts.sum(1, keepdims=True)).ravel()


def main(argv: list[str] | None = None) -> int:
    default_data = os.environ.get("MAMBABENCH_DATA", str(ROOT / "data"))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--species-dir", type=Path, default=Path(default_data) / "great_apes")
    parser.add_argument("--species", nargs="+", default=["human", "chimpanzee", "gorilla", "orangutan"])
    parser.add_argument("--train", default="chr22_train", help="training sequence name in every species file")
    parser.add_argument("--test", default="chr22_test", help="held-out sequence name in every species file")
    parser.add_argument("--k", type=int, nargs="+", default=[4, 6, 8], help="k-mer sizes (Markov order k-1)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--windows", type=int, default=1000, help="test windows per species")
    parser.add_argument(
        "--fractions",
        action="store_true",
        help="data=species splits: train on the first 80 %% of every sequence, test on the last 10 %%",
    )
    parser.add_argument(
        "--keep-case", action="store_true", help="soft-masked (lower-case) bases as their own letters"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    alphabet = 8 if args.keep_case else 4
    if args.fractions:
        splits = {"split_fractions": {"train": [0.0, 0.8], "valid": [0.8, 0.9], "test": [0.9, 1.0]}}
    else:
        splits = {"split_contigs": {"train": [args.train], "valid": [], "test": [args.test]}}
    data = SpeciesDataModule(str(args.species_dir), args.species, **splits)
    data.setup()
    train, test = {}, {}
    for split, store in (("train", train), ("test", test)):
        for name, genomes, regions in zip(args.species, data.genomes, data.regions_for(split, 1)):
            # regions are joined with an unknown base between them, so no k-mer spans two of them
            parts = [
                encode(genomes[r.genome].fetch(r.contig, r.start, r.end) + "N", args.keep_case)
                for r in regions
            ]
            store[name] = np.concatenate(parts)
    rng = np.random.default_rng(args.seed)
    print(f"| k | length | accuracy | {' | '.join(args.species)} |")
    print("|---|---|---|" + "---|" * len(args.species))
    for k in args.k:
        models = [fit(train[name], k, alphabet) for name in args.species]
        for length in args.lengths:
            correct = np.zeros(len(args.species))
            for label, name in enumerate(args.species):
                seq = test[name]
                if seq.size < length:
                    raise SystemExit(f"species '{name}' test sequence is shorter than {length}")
                for start in rng.integers(0, seq.size - length + 1, size=args.windows):
                    ids = kmers(seq[start : start + length], k, alphabet)
                    correct[label] += int(np.argmax([m[ids].sum() for m in models]) == label)
            per_class = correct / args.windows
            print(
                f"| {k} | {length} | {per_class.mean():.3f} | "
                + " | ".join(f"{a:.3f}" for a in per_class)
                + " |",
                flush=True,
            )
    where = "the last 10 % of every sequence" if args.fractions else f"'{args.test}'"
    print(
        f"\nchance: {1 / len(args.species):.3f}; {args.windows} windows per species from {where} "
        f"(random starts; long windows overlap), models fitted on the training regions"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
