"""Few-shot word tasks for ``data=fewshot_words``: ``<data_dir>/icl_tasks/<task>.json`` ([input, output] pairs).

Built from registry packages, in the spirit of Hendel et al.'s task set (arXiv 2310.15916):

* ``antonyms``: adjective antonym pairs of WordNet 3.0 (Debian ``wordnet-base``, its ``data.adj``
  antonym pointers), single lower-case words only;
* ``country_capital``: country -> capital from the PyPI package ``countryinfo`` (``pip install countryinfo``);
* ``uppercase`` and ``first_letter``: word -> WORD and word -> w on the WordNet adjectives.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import re
from pathlib import Path

from mambabench.data.prepare.common import PrepareError, debian_package, extract_from_deb, write_manifest

log = logging.getLogger(__name__)

DESCRIPTION = (
    "few-shot word tasks for data=fewshot_words: <data-dir>/icl_tasks/*.json (antonyms from "
    "Debian wordnet-base, country_capital from PyPI countryinfo, uppercase, first_letter)"
)
WORDNET_PACKAGE = "wordnet-base"
WORDNET_ADJ = "usr/share/wordnet/data.adj"
_WORD = re.compile(r"^[a-z]+$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-pairs", type=int, default=None, help="keep at most this many pairs per task")
    parser.add_argument("--seed", type=int, default=0, help="which pairs --max-pairs keeps")
    parser.add_argument(
        "--wordnet-adj",
        type=Path,
        default=None,
        help="a WordNet data.adj to read instead of the Debian package's",
    )


def wordnet_antonyms(data_adj: Path) -> list[tuple[str, str]]:
    """(word, antonym) pairs from the ``!`` pointers of a WordNet ``data.adj`` file."""
    synsets: dict[str, list[str]] = {}
    pointers: list[tuple[str, int, str, int]] = []
    for line in data_adj.read_text(encoding="latin-1").splitlines():
        if not line or line.startswith(" "):
            continue
        fields = line.split(" | ", 1)[0].split()
        offset, count = fields[0], int(fields[3], 16)
        words = [re.sub(r"\(.*\)$", "", w).lower() for w in fields[4 : 4 + 2 * count : 2]]
        synsets[offset] = words
        rest = fields[4 + 2 * count :]
        for i in range(int(rest[0])):
            symbol, target, _, source_target = rest[1 + 4 * i : 5 + 4 * i]
            if symbol == "!":
                pointers.append((offset, int(source_target[:2], 16), target, int(source_target[2:], 16)))
    pairs, seen = [], set()
    for offset, source, target, target_word in pointers:
        if target not in synsets or not source or not target_word:
            continue
        word, antonym = synsets[offset][source - 1], synsets[target][target_word - 1]
        if _WORD.match(word) and _WORD.match(antonym) and word not in seen:
            seen.add(word)
            pairs.append((word, antonym))
    return pairs


def country_capitals() -> list[tuple[str, str]]:
    """(country, capital) from the ``countryinfo`` package (single-capital, ASCII names)."""
    try:
        import countryinfo
    except ImportError as err:
        raise PrepareError(
            "country_capital needs the PyPI package countryinfo: pip install countryinfo "
            '(or pip install "mambabench[icl]")'
        ) from err
    pairs = []
    for country in countryinfo.all_countries():
        try:
            name, capital = country.name(), country.capital()
        except Exception:  # a few territories have no capital entry
            continue
        if isinstance(capital, list):
            capital = capital[0] if len(capital) == 1 else None
        if name and isinstance(capital, str) and capital and name.isascii() and capital.isascii():
            pairs.append((name.title() if name.islower() else name, capital))
    return sorted(set(pairs))


def _subset(pairs: list[tuple[str, str]], max_pairs: int | None, seed: int) -> list[tuple[str, str]]:
    if max_pairs is None or len(pairs) <= max_pairs:
        return pairs
    return sorted(random.Random(seed).sample(pairs, max_pairs))


def prepare(args: argparse.Namespace) -> Path:
    out = Path(args.data_dir) / "icl_tasks"
    out.mkdir(parents=True, exist_ok=True)
    data_adj = args.wordnet_adj
    if data_adj is None:
        deb = debian_package(WORDNET_PACKAGE, Path(args.deb_dir))
        data_adj = extract_from_deb(deb, WORDNET_ADJ, Path(args.deb_dir) / "wordnet" / "data.adj")
    antonyms = wordnet_antonyms(Path(data_adj))
    words = sorted({w for pair in antonyms for w in pair})
    tasks = {
        "antonyms": antonyms,
        "country_capital": country_capitals(),
        "uppercase": [(w, w.upper()) for w in words],
        "first_letter": [(w, w[0]) for w in words],
    }
    counts = {}
    for name, pairs in tasks.items():
        pairs = _subset(pairs, args.max_pairs, args.seed)
        lines = ",\n".join(json.dumps(list(pair), ensure_ascii=False) for pair in pairs)
        (out / f"{name}.json").write_text(f"[\n{lines}\n]\n")
        counts[name] = len(pairs)
    write_manifest(
        out,
        {
            "tasks": counts,
            "sources": {
                "antonyms": "Debian wordnet-base (WordNet 3.0 data.adj)",
                "country_capital": "PyPI countryinfo",
            },
        },
    )
    log.info("  " + ", ".join(f"{name}: {n} pairs" for name, n in counts.items()))
    return out
