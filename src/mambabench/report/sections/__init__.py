"""One module per paper table or figure. Each has ``render(runs, out_dir) -> list[Path]``: it picks its
runs by experiment preset, reads what exists and writes its files (missing runs are shown as missing)."""
