"""DNA data modules: HG38-style next-base pretraining and great-apes species classification.

``HG38DataModule`` (mamba-paper.md §4.1): a genome FASTA plus a BED of ``chrom start end split``
intervals (Basenji's ``sequences_human.bed``, 2^17-bp segments). Windows follow the Mamba paper rather
than HyenaDNA's one-window-per-row: for ``seq_len <= len(interval)`` each interval is tiled into
``len // seq_len`` non-overlapping windows; for longer ``seq_len`` each interval gives two windows, one
starting at its start and one ending at its end (extending into the flanking genome). A window reads
``seq_len + 1`` bases: inputs are the first ``seq_len``, targets the next base at each position
(bases that are ``N`` carry no loss). Training windows are reshuffled every epoch; validation and test
windows are fixed.

``SpeciesDataModule`` (mamba-paper.md §4.4, HyenaDNA's species task): one FASTA (or a folder of FASTAs)
per species; each example picks a species uniformly, then a window uniformly among the windows of that
species' regions in the split. Splits are disjoint: whole sequences per split (chromosomes, or the
regions that ``scripts/prepare_data.py great_apes`` writes) or the same disjoint fractions of every
sequence, so no evaluation window overlaps training.

Both expose ``set_train_stage(seq_len, batch_size)`` / ``stage_for_epoch`` for sequence-length warmup
(:class:`mambabench.data.seqlen_warmup.SequenceLengthWarmup`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mambabench.data.base import ResumableLoader, SequenceDataModule
from mambabench.data.genome import FastaGenome, GenomeDataError, Interval, read_bed
from mambabench.data.tokenizers import CharacterTokenizer
from mambabench.tasks.lm import IGNORE_INDEX
from mambabench.utils.errors import ConfigError

HG38_PREPARE = "python scripts/prepare_data.py hg38"
GREAT_APES_PREPARE = "python scripts/prepare_data.py great_apes"
SPECIES_PREPARE = "python scripts/prepare_data.py species"
SPECIES_NEEDS_CLASSIFICATION = (
    "data=species / data=great_apes is species classification, but the task has no classes (task=lm): drop "
    "task=lm (these data configs select task=classification themselves), or set data.lm_targets=true to "
    "train next-base prediction on the DNA windows on purpose"
)
StageFn = Callable[[int], tuple[int, int]]


def tile_windows(
    intervals: Sequence[Interval], lengths: dict[str, int], contigs: list[str], seq_len: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Window starts for ``seq_len`` over ``intervals`` (the paper's scheme, see the module docstring).

    Returns (contig_index (n,) int32 into ``contigs``, start (n,) int64, number of intervals that gave
    no window because the genome around them is shorter than ``seq_len``).
    """
    index = {name: i for i, name in enumerate(contigs)}
    contig_parts, start_parts, skipped = [], [], 0
    for iv in intervals:
        size, contig_len = len(iv), lengths[iv.contig]
        if size >= seq_len:
            starts = iv.start + seq_len * np.arange(size // seq_len, dtype=np.int64)
        else:
            starts = np.unique(np.array([iv.start, iv.end - seq_len], dtype=np.int64))
            starts = starts[(starts >= 0) & (starts + seq_len <= contig_len)]
        if starts.size == 0:
            skipped += 1
            continue
        start_parts.append(starts)
        contig_parts.append(np.full(starts.size, index[iv.contig], dtype=np.int32))
    if not start_parts:
        return np.zeros(0, np.int32), np.zeros(0, np.int64), skipped
    return np.concatenate(contig_parts), np.concatenate(start_parts), skipped


def _coin(seed: int, index: int) -> bool:
    """A reproducible fair coin for sample ``index`` (used for reverse-complement augmentation)."""
    return bool(np.random.default_rng((seed, 7, index)).random() < 0.5)


class GenomeLMDataset(Dataset):
    """Next-base windows: item -> {"input_ids": (seq_len,), "targets": (seq_len,)} int64.

    Args:
        genome: the FASTA.
        contigs: names indexed by ``contig_index``.
        contig_index, starts: (n,) window positions from :func:`tile_windows`.
        shuffle: item ``epoch * n + i`` reads window ``perm_epoch[i]`` (a fresh permutation per epoch,
            as :class:`~mambabench.data.base.EpochSampler` numbers samples); otherwise item ``i`` is window ``i``.
        rc_aug: reverse-complement each window with probability 1/2 (reproducible per item).
        ignore_n_targets: targets that are ``N`` carry no loss (bits per base are over A/C/G/T).
    """

    def __init__(
        self,
        genome: FastaGenome,
        contigs: list[str],
        contig_index: np.ndarray,
        starts: np.ndarray,
        seq_len: int,
        tokenizer: CharacterTokenizer,
        shuffle: bool = False,
        rc_aug: bool = False,
        ignore_n_targets: bool = True,
        seed: int = 0,
    ) -> None:
        self.genome, self.contigs, self.seq_len, self.tokenizer = genome, contigs, seq_len, tokenizer
        self.contig_index, self.starts = contig_index, starts
        self.shuffle, self.rc_aug, self.ignore_n_targets, self.seed = shuffle, rc_aug, ignore_n_targets, seed
        self._perm_epoch, self._perm = -1, None

    def __len__(self) -> int:
        return int(self.starts.size)

    def _window(self, index: int) -> int:
        epoch, i = divmod(index, len(self))
        if not self.shuffle:
            return i
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng((self.seed, epoch)).permutation(len(self))
            self._perm_epoch = epoch
        return int(self._perm[i])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        w = self._window(int(index))
        contig = self.contigs[self.contig_index[w]]
        start = int(self.starts[w])
        end = min(start + self.seq_len + 1, self.genome.lengths[contig])
        ids = self.tokenizer.encode(
            self.genome.fetch(contig, start, end), where=f"FASTA '{self.genome.path}' {contig}:{start}-{end}"
        )
        if self.rc_aug and _coin(self.seed, int(index)):
            ids = self.tokenizer.reverse_complement(ids)
        targets = torch.full((self.seq_len,), IGNORE_INDEX, dtype=torch.long)
        targets[: ids.numel() - 1] = ids[1:]
        if self.ignore_n_targets:
            targets[self.tokenizer.is_n(targets)] = IGNORE_INDEX
        return {"input_ids": ids[: self.seq_len].clone(), "targets": targets}


class _StagedDataModule(SequenceDataModule):
    """Training length and batch size that a sequence-length-warmup callback may change per epoch."""

    def __init__(
        self, seq_len: int, batch_size: int, num_workers: int, pin_memory: bool, eval_batch_size: int | None
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory, eval_batch_size)
        if seq_len < 2:
            raise ConfigError(f"data.seq_len must be >= 2, got {seq_len}")
        self.seq_len = seq_len
        self.stage_for_epoch: StageFn | None = None

    def train_stage(self) -> tuple[int, int]:
        """(seq_len, batch_size) for the epoch about to start."""
        if self.stage_for_epoch is not None and self.trainer is not None:
            return self.stage_for_epoch(self.trainer.current_epoch)
        return self.seq_len, self.batch_size


class HG38DataModule(_StagedDataModule):
    """Next-base prediction on a genome FASTA + BED of train/valid/test intervals.

    Args:
        fasta: uncompressed FASTA (e.g. ``hg38.ml.fa``); gzip gets a clear error.
        bed: ``chrom start end split`` rows (Basenji ``sequences_human.bed``).
        seq_len: training window length (paper: 2^10 for model-size scaling, 2^10..2^20 for context scaling).
        eval_seq_len: validation/test window length (default ``seq_len``).
        max_eval_windows: evaluate on at most this many evenly spaced windows per split (None = all).
        rc_aug: reverse-complement augmentation (HyenaDNA's ``rc_aug``).
        keep_soft_mask: give soft-masked (lower-case) bases their own tokens instead of folding them.
        unknown_bases: ``error`` (default) or ``n`` (read non-ACGTN characters, e.g. IUPAC codes, as N).
        ignore_n_targets: no loss on targets that are N.
        train_split, val_split, test_split: split names in the BED's 4th column.
    """

    def __init__(
        self,
        fasta: str,
        bed: str,
        seq_len: int = 1024,
        eval_seq_len: int | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        max_eval_windows: int | None = None,
        rc_aug: bool = False,
        keep_soft_mask: bool = False,
        unknown_bases: str = "error",
        ignore_n_targets: bool = True,
        train_split: str = "train",
        val_split: str = "valid",
        test_split: str = "test",
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(seq_len, batch_size, num_workers, pin_memory, eval_batch_size)
        self.fasta, self.bed = str(fasta), str(bed)
        self.eval_seq_len = eval_seq_len or seq_len
        self.max_eval_windows = max_eval_windows
        self.tokenizer = CharacterTokenizer("ACGTN", keep_soft_mask=keep_soft_mask, unknown=unknown_bases)
        self.vocab_size = self.tokenizer.vocab_size
        self.rc_aug, self.ignore_n_targets, self.seed = rc_aug, ignore_n_targets, seed
        self.split_names = {"train": train_split, "val": val_split, "test": test_split}
        self.genome: FastaGenome | None = None
        self.intervals: dict[str, list[Interval]] = {}
        self._windows: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.genome is not None:
            return
        self.genome = FastaGenome(self.fasta, HG38_PREPARE)
        self.intervals = read_bed(self.bed, self.genome, HG38_PREPARE)

    def _split_intervals(self, role: str) -> list[Interval]:
        name = self.split_names[role]
        if name not in self.intervals:
            raise GenomeDataError(
                f"BED '{self.bed}' has no '{name}' rows (splits found: {sorted(self.intervals)}); set "
                f"data.{role}_split to one of them"
            )
        return self.intervals[name]

    def windows(self, role: str, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
        """(contig_index, starts) of the ``role`` split ("train"/"val"/"test") at ``seq_len``."""
        self.setup()
        key = (role, seq_len)
        if key not in self._windows:
            intervals = self._split_intervals(role)
            index, starts, skipped = tile_windows(intervals, self.genome.lengths, self.genome.names, seq_len)
            name = self.split_names[role]
            if starts.size == 0:
                longest = max(intervals, key=len)
                raise GenomeDataError(
                    f"no window of length {seq_len} fits the {len(intervals)} '{name}' interval(s) of BED "
                    f"'{self.bed}' (longest: {longest.contig}:{longest.start}-{longest.end}, sequence length "
                    f"{self.genome.lengths[longest.contig]}); lower data.seq_len or use a larger genome"
                )
            if skipped:
                warnings.warn(
                    f"{skipped} of {len(intervals)} '{name}' intervals skipped: the sequence around them "
                    f"is shorter than {seq_len} bases",
                    stacklevel=2,
                )
            if role != "train" and self.max_eval_windows and starts.size > self.max_eval_windows:
                keep = np.linspace(0, starts.size - 1, self.max_eval_windows).round().astype(np.int64)
                index, starts = index[keep], starts[keep]
            self._windows[key] = (index, starts)
        return self._windows[key]

    def _dataset(self, role: str, seq_len: int) -> GenomeLMDataset:
        index, starts = self.windows(role, seq_len)
        train = role == "train"
        return GenomeLMDataset(
            self.genome,
            self.genome.names,
            index,
            starts,
            seq_len,
            self.tokenizer,
            shuffle=train,
            rc_aug=self.rc_aug and train,
            ignore_n_targets=self.ignore_n_targets,
            seed=self.seed,
        )

    def train_dataloader(self) -> DataLoader:
        seq_len, batch_size = self.train_stage()
        dataset = self._dataset("train", seq_len)
        return ResumableLoader(dataset, batch_size, len(dataset), **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(self._dataset("val", self.eval_seq_len))

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self._dataset("test", self.eval_seq_len))


# ---------------------------------------------------------------------------------------- species
SPLITS = ("train", "valid", "test")
FASTA_SUFFIXES = (".fa", ".fasta", ".fna")


@dataclass(frozen=True)
class Region:
    """Bases ``[start, end)`` of sequence ``contig`` in the ``genome``-th FASTA of a species."""

    genome: int
    contig: str
    start: int
    end: int

    def __len__(self) -> int:
        return self.end - self.start


def check_split_fractions(fractions: dict[str, Sequence[float]]) -> dict[str, tuple[float, float]]:
    """Validate ``{split: [from, to]}`` fractions of every sequence: keys from train/valid/test, ``0 <= from
    < to <= 1``, and no two splits overlapping (an evaluation window must never see training bases)."""
    out: dict[str, tuple[float, float]] = {}
    for split, bounds in fractions.items():
        if split not in SPLITS:
            raise ConfigError(f"data.split_fractions has key {split!r}; use train, valid and test")
        try:
            lo, hi = (float(b) for b in bounds)
        except (TypeError, ValueError):
            raise ConfigError(f"data.split_fractions.{split} must be [from, to], got {bounds!r}") from None
        if not 0.0 <= lo < hi <= 1.0:
            raise ConfigError(f"data.split_fractions.{split}=[{lo}, {hi}] must satisfy 0 <= from < to <= 1")
        out[split] = (lo, hi)
    ranked = sorted(out.items(), key=lambda item: item[1])
    for (a, (_, a_hi)), (b, (b_lo, _)) in zip(ranked, ranked[1:]):
        if b_lo < a_hi:
            raise ConfigError(
                f"data.split_fractions: {a} {list(out[a])} overlaps {b} {list(out[b])}; the regions "
                f"of train/valid/test must be disjoint so that no evaluation window overlaps training"
            )
    return out


def check_split_contigs(split_contigs: dict[str, list[str] | None]) -> dict[str, list[str] | None]:
    """Validate ``{split: [contig, ...] | None}``: known keys, and no contig in two splits."""
    owner: dict[str, str] = {}
    for split, contigs in split_contigs.items():
        if split not in SPLITS:
            raise ConfigError(f"data.split_contigs has key {split!r}; use train, valid and test")
        for contig in contigs or []:
            if contig in owner and owner[contig] != split:
                raise ConfigError(
                    f"data.split_contigs lists sequence {contig!r} under both {owner[contig]} and "
                    f"{split}; the splits must be disjoint"
                )
            owner[contig] = split
    return dict(split_contigs)


class SpeciesWindowDataset(Dataset):
    """Species classification windows: item -> {"input_ids": (seq_len,), "labels": (), "targets": (seq_len,)}
    int64; ``targets`` (the next base, -100 at the last position and on N) lets ``task=lm`` pretrain on them.

    Item ``i`` draws, with a generator seeded by (seed, split, i): a species uniformly (or ``i mod S``
    when ``balanced``), then a window start uniformly over all windows inside that species' regions of
    the split (a window never crosses a region's end).

    Args:
        genomes: per species, its FASTA files (label = position in the outer list).
        regions: per species, the regions of this split holding at least ``seq_len`` bases.
    """

    def __init__(
        self,
        genomes: list[list[FastaGenome]],
        regions: list[list[Region]],
        seq_len: int,
        num_samples: int,
        tokenizer: CharacterTokenizer,
        salt: int,
        seed: int = 0,
        balanced: bool = False,
        rc_aug: bool = False,
    ) -> None:
        self.genomes, self.regions, self.seq_len, self.tokenizer = genomes, regions, seq_len, tokenizer
        self.num_samples, self.salt, self.seed, self.balanced, self.rc_aug = (
            num_samples,
            salt,
            seed,
            balanced,
            rc_aug,
        )
        # per species: cumulative count of window starts over its regions
        self.cumulative = [np.cumsum([len(r) - seq_len + 1 for r in rs]) for rs in regions]

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        rng = np.random.default_rng((self.seed, self.salt, int(index)))
        label = int(index) % len(self.genomes) if self.balanced else int(rng.integers(len(self.genomes)))
        cumulative = self.cumulative[label]
        pick = int(rng.integers(int(cumulative[-1])))
        which = int(np.searchsorted(cumulative, pick, side="right"))
        region = self.regions[label][which]
        start = region.start + pick - (int(cumulative[which - 1]) if which else 0)
        genome = self.genomes[label][region.genome]
        ids = self.tokenizer.encode(
            genome.fetch(region.contig, start, start + self.seq_len),
            where=f"FASTA '{genome.path}' {region.contig}:{start}-{start + self.seq_len}",
        )
        if self.rc_aug and rng.random() < 0.5:
            ids = self.tokenizer.reverse_complement(ids)
        targets = torch.full_like(ids, IGNORE_INDEX)
        targets[:-1] = ids[1:]
        targets[self.tokenizer.is_n(targets)] = IGNORE_INDEX
        return {"input_ids": ids, "labels": torch.tensor(label, dtype=torch.long), "targets": targets}


class SpeciesDataModule(_StagedDataModule):
    """Species classification from DNA windows (HyenaDNA's species task; the paper's great apes).

    Each class is one FASTA or a folder of FASTAs (``*.fa``, ``*.fasta``, ``*.fna``: e.g. several strains
    or chromosomes). Every split draws windows from its own disjoint regions of each species, given either
    as whole sequences (``split_contigs``: chromosomes, or the regions ``prepare_data.py great_apes``
    writes) or as the same fractions of every sequence (``split_fractions``, used when ``split_contigs``
    is null: e.g. train the first 80 % of each chromosome, validate on the next 10 %, test on the last 10 %).

    Args:
        species_dir: folder holding ``<name><suffix>`` or ``<name>/`` per class.
        species: class names in label order, or ``{name: path}`` (a FASTA or a folder; relative paths are
            under ``species_dir``).
        split_contigs: {"train"|"valid"|"test": [contig, ...]}; ``train: null`` means every contig not
            listed for valid/test (HyenaDNA's chromosome splits: valid 1,3,12,13; test 5,7,9,10,11).
        split_fractions: {"train"|"valid"|"test": [from, to]} of every sequence (when split_contigs is null).
        seq_len: window length (paper: 2^10..2^20).
        train_batches_per_epoch: batches per training epoch (paper: 1024, at batch 64).
        num_eval_samples: fixed, class-balanced windows per evaluation split.
        rc_aug: reverse-complement a training window with probability 1/2.
        lm_targets: allow a task without classes (``task=lm``): next-base prediction on the windows.
            Off by default, so that ``task=lm`` with this data is an error rather than a run that silently
            trains the wrong objective.
        prepare_command: the command that creates missing files (quoted in the error).
    """

    def __init__(
        self,
        species_dir: str,
        species: Sequence[str] | dict[str, str] = ("human", "chimpanzee", "gorilla", "orangutan"),
        split_contigs: dict[str, list[str] | None] | None = None,
        split_fractions: dict[str, Sequence[float]] | None = None,
        suffix: str = ".fa",
        seq_len: int = 1024,
        eval_seq_len: int | None = None,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        train_batches_per_epoch: int = 1024,
        num_eval_samples: int = 512,
        rc_aug: bool = False,
        keep_soft_mask: bool = False,
        unknown_bases: str = "error",
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
        lm_targets: bool = False,
        prepare_command: str = GREAT_APES_PREPARE,
    ) -> None:
        super().__init__(seq_len, batch_size, num_workers, pin_memory, eval_batch_size)
        self.lm_targets, self.prepare_command = lm_targets, prepare_command
        self.species_dir, self.suffix = Path(species_dir), suffix
        self.sources = self._class_sources(species)
        self.species = list(self.sources)
        if split_contigs is None and split_fractions is None:
            split_contigs = {"train": None, "valid": [], "test": []}
        self.split_contigs = check_split_contigs(split_contigs) if split_contigs is not None else None
        self.split_fractions = check_split_fractions(split_fractions) if self.split_contigs is None else None
        self.eval_seq_len = eval_seq_len or seq_len
        self.train_batches_per_epoch, self.num_eval_samples = train_batches_per_epoch, num_eval_samples
        self.tokenizer = CharacterTokenizer("ACGTN", keep_soft_mask=keep_soft_mask, unknown=unknown_bases)
        self.vocab_size = self.tokenizer.vocab_size
        self.num_classes = len(self.species)
        self.class_names = list(self.species)
        self.rc_aug, self.seed = rc_aug, seed
        self.genomes: list[list[FastaGenome]] = []

    def _class_sources(self, species: Sequence[str] | dict[str, str]) -> dict[str, Path]:
        """{class name: FASTA or folder}, in label order; duplicate or too few names are an error."""
        if isinstance(species, dict):
            names = [str(name) for name in species]
            paths = [Path(str(p)) for p in species.values()]
            paths = [p if p.is_absolute() else self.species_dir / p for p in paths]
        else:
            names = [str(name) for name in species]
            paths = []
            for name in names:
                folder = self.species_dir / name
                paths.append(folder if folder.is_dir() else self.species_dir / f"{name}{self.suffix}")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ConfigError(
                f"data.species names {duplicates} more than once; class names must be distinct (got {names})"
            )
        if len(names) < 2:
            raise ConfigError(f"data.species needs at least two classes, got {names}")
        return dict(zip(names, paths))

    def _open_class(self, name: str, path: Path) -> list[FastaGenome]:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in FASTA_SUFFIXES)
            if not files:
                raise GenomeDataError(
                    f"species folder '{path}' for '{name}' has no FASTA file "
                    f"({', '.join('*' + s for s in FASTA_SUFFIXES)}); add one or fix data.species"
                )
        else:
            files = [path]
        genomes = []
        for file in files:
            if file.exists() and file.stat().st_size == 0:
                raise GenomeDataError(
                    f"species file '{file}' for '{name}' is empty; re-create it "
                    f"({self.prepare_command}) or drop '{name}' from data.species"
                )
            try:
                genomes.append(FastaGenome(file, self.prepare_command))
            except GenomeDataError as err:
                raise GenomeDataError(f"species '{name}': {err}") from err
        return genomes

    def setup(self, stage: str | None = None) -> None:
        if (
            self.trainer is not None
            and not self.lm_targets
            and getattr(self.trainer.lightning_module, "num_classes", None) is None
        ):
            raise ConfigError(SPECIES_NEEDS_CLASSIFICATION)
        if not self.genomes:
            self.genomes = [self._open_class(name, path) for name, path in self.sources.items()]

    def _regions(self, split: str, genomes: list[FastaGenome], name: str) -> list[Region]:
        """All regions of ``split`` for one species, before the length filter."""
        if self.split_fractions is not None:
            if split not in self.split_fractions:
                raise ConfigError(f"data.split_fractions has no '{split}' entry; give [from, to] for it")
            lo, hi = self.split_fractions[split]
            return [
                Region(g, contig, int(lo * size), int(hi * size))
                for g, genome in enumerate(genomes)
                for contig, size in genome.lengths.items()
            ]
        listed = self.split_contigs.get(split)
        held_out = {c for key in SPLITS if key != split for c in (self.split_contigs.get(key) or [])}
        regions = []
        for g, genome in enumerate(genomes):
            if listed is None:
                regions += [Region(g, c, 0, size) for c, size in genome.lengths.items() if c not in held_out]
        if listed is not None:
            for contig in listed:
                found = [g for g, genome in enumerate(genomes) if contig in genome.lengths]
                if not found:
                    known = "; ".join(genome.describe_contigs() for genome in genomes)
                    raise GenomeDataError(
                        f"species '{name}' FASTA '{genomes[0].path if len(genomes) == 1 else self.sources[name]}' "
                        f"has no sequence {contig!r} listed in data.split_contigs.{split}; known: {known}"
                    )
                regions += [Region(g, contig, 0, genomes[g].lengths[contig]) for g in found]
        return regions

    def regions_for(self, split: str, seq_len: int) -> list[list[Region]]:
        """Per species, the regions of ``split`` holding at least ``seq_len`` bases (shorter ones are skipped
        with a warning; a species left with none is an error that says how many bases it has)."""
        self.setup()
        out = []
        for name, genomes in zip(self.species, self.genomes):
            regions = self._regions(split, genomes, name)
            usable = [r for r in regions if len(r) >= seq_len]
            if not usable:
                longest = max((len(r) for r in regions), default=0)
                raise GenomeDataError(
                    f"species '{name}' has no '{split}' region of at least {seq_len} bases (longest: {longest} of "
                    f"{sum(len(r) for r in regions)} bases in {len(regions)} region(s), e.g. "
                    f"{[r.contig for r in regions[:4]]}); lower data.seq_len or supply more sequence for '{name}'"
                )
            if len(usable) < len(regions):
                warnings.warn(
                    f"species '{name}', split '{split}': {len(regions) - len(usable)} of {len(regions)} "
                    f"regions are shorter than {seq_len} bases and were skipped",
                    stacklevel=2,
                )
            out.append(usable)
        return out

    def contigs_for(self, split: str, seq_len: int) -> list[list[str]]:
        """Per species, the names of the sequences that ``split`` draws windows from at ``seq_len``."""
        return [
            list(dict.fromkeys(r.contig for r in regions)) for regions in self.regions_for(split, seq_len)
        ]

    def _dataset(self, split: str, seq_len: int, num_samples: int, train: bool) -> SpeciesWindowDataset:
        salt = {"train": 0, "valid": 1, "test": 2}[split]
        return SpeciesWindowDataset(
            self.genomes,
            self.regions_for(split, seq_len),
            seq_len,
            num_samples,
            self.tokenizer,
            salt,
            self.seed,
            balanced=not train,
            rc_aug=self.rc_aug and train,
        )

    def train_dataloader(self) -> DataLoader:
        seq_len, batch_size = self.train_stage()
        num_samples = self.train_batches_per_epoch * batch_size
        dataset = self._dataset("train", seq_len, num_samples, train=True)
        return ResumableLoader(dataset, batch_size, num_samples, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader(
            self._dataset("valid", self.eval_seq_len, self.num_eval_samples, train=False)
        )

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self._dataset("test", self.eval_seq_len, self.num_eval_samples, train=False))
