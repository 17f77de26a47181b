"""DNA data: tokenizer, FASTA/BED checks, window tiling, the HG38 and species data modules, bad input.

All sequences are real (tests/data/datasets: hg19 chr17 and the Ensembl great-ape chr22 alignment)."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mambabench.data.dna import HG38DataModule, SpeciesDataModule, tile_windows
from mambabench.data.genome import FastaGenome, GenomeDataError, Interval, read_bed
from mambabench.data.tokenizers import CharacterTokenizer, InvalidBaseError
from mambabench.tasks.lm import IGNORE_INDEX
from mambabench.utils.errors import ConfigError, DataNotFoundError

DATA = Path(__file__).resolve().parents[1] / "data" / "datasets"
HG38 = DATA / "hg38"
APES = DATA / "great_apes"
BACTERIA = DATA / "species"
CLASSES = ["human", "e_coli", "h_pylori", "s_aureus", "v_cholerae"]
FRACTIONS = {"train": [0.0, 0.8], "valid": [0.8, 0.9], "test": [0.9, 1.0]}
SPECIES = ["human", "chimpanzee", "gorilla", "orangutan"]


def _real_bases(n: int, offset: int = 0) -> str:
    seq = "".join(line.strip() for line in (HG38 / "genome.fa").read_text().splitlines()[1:])
    return seq[offset : offset + n]


def _write_fasta(path: Path, records: dict[str, str]) -> Path:
    path.write_text("".join(f">{name}\n{seq}\n" for name, seq in records.items()))
    return path


@pytest.fixture
def hg38_copy(tmp_path: Path) -> Path:
    shutil.copytree(HG38, tmp_path / "hg38")
    return tmp_path / "hg38"


# ------------------------------------------------------------------------------------ tokenizer
def test_tokenizer_ids_match_hyenadna() -> None:
    tok = CharacterTokenizer()
    assert tok.vocab_size == 12
    assert tok.encode("ACGTN").tolist() == [7, 8, 9, 10, 11]
    assert tok.encode("acgtn").tolist() == [7, 8, 9, 10, 11]  # soft mask folded
    assert tok.decode(tok.encode("GATTACA")) == "GATTACA"


def test_tokenizer_keeps_soft_mask_when_asked() -> None:
    tok = CharacterTokenizer(keep_soft_mask=True)
    assert tok.vocab_size == 17
    ids = tok.encode("Aa")
    assert ids[0] != ids[1] and tok.decode(ids) == "Aa"
    assert tok.decode(tok.reverse_complement(tok.encode("AAcg"))) == "cgTT"


def test_reverse_complement() -> None:
    tok = CharacterTokenizer()
    assert tok.decode(tok.reverse_complement(tok.encode("AACGTN"))) == "NACGTT"


def test_non_acgtn_is_an_error_naming_where_and_the_fix() -> None:
    tok = CharacterTokenizer()
    with pytest.raises(
        InvalidBaseError, match=r"chr1:0-6 has 2 character\(s\).*\['R', 'Y'\].*unknown_bases=n"
    ):
        tok.encode("ACRTYA", where="chr1:0-6")
    lenient = CharacterTokenizer(unknown="n")
    assert lenient.decode(lenient.encode("ACRT")) == "ACNT"


# --------------------------------------------------------------------------------- FASTA and BED
def test_fasta_genome_reads_real_sequence(hg38_copy: Path) -> None:
    genome = FastaGenome(hg38_copy / "genome.fa")
    assert genome.lengths == {"chr17": 24576}
    assert genome.fetch("chr17", 0, 10).upper() == _real_bases(10).upper()


def test_missing_fasta_names_path_and_prepare_command(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"nothere\.fa.*python scripts/prepare_data.py hg38"):
        FastaGenome(tmp_path / "nothere.fa")


def test_gzip_fasta_gets_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "genome.fa.gz"
    with gzip.open(path, "wt") as handle:
        handle.write(">chr1\n" + _real_bases(100) + "\n")
    with pytest.raises(GenomeDataError, match="gzip-compressed.*gunzip -k"):
        FastaGenome(path)


def test_empty_fasta(tmp_path: Path) -> None:
    (tmp_path / "empty.fa").write_text("")
    with pytest.raises(GenomeDataError, match="empty"):
        FastaGenome(tmp_path / "empty.fa")


def test_bed_with_missing_contig_lists_known_ones(hg38_copy: Path) -> None:
    genome = FastaGenome(hg38_copy / "genome.fa")
    bed = hg38_copy / "bad.bed"
    bed.write_text("chr17\t0\t100\ttrain\nchr1\t0\t100\ttrain\n")
    with pytest.raises(GenomeDataError, match=r"line 2 names sequence 'chr1'.*known: chr17"):
        read_bed(bed, genome, "prep")


def test_bed_interval_outside_the_chromosome(hg38_copy: Path) -> None:
    genome = FastaGenome(hg38_copy / "genome.fa")
    bed = hg38_copy / "bad.bed"
    bed.write_text("chr17\t24000\t25000\tvalid\n")
    with pytest.raises(
        GenomeDataError, match=r"line 1: interval chr17:24000-25000 is outside the sequence \(length 24576\)"
    ):
        read_bed(bed, genome, "prep")


def test_bed_reads_splits(hg38_copy: Path) -> None:
    splits = read_bed(hg38_copy / "sequences.bed", FastaGenome(hg38_copy / "genome.fa"), "prep")
    assert {k: len(v) for k, v in splits.items()} == {"train": 2, "valid": 1, "test": 1}


# ---------------------------------------------------------------------------------- window tiling
def test_tiling_follows_the_paper() -> None:
    lengths = {"c": 10_000}
    # interval longer than the window: non-overlapping windows
    index, starts, skipped = tile_windows([Interval("c", 1000, 5000, 1)], lengths, ["c"], 1000)
    assert starts.tolist() == [1000, 2000, 3000, 4000] and skipped == 0 and index.tolist() == [0] * 4
    # window longer than the interval: one window from its start, one ending at its end
    _, starts, _ = tile_windows([Interval("c", 4000, 5000, 1)], lengths, ["c"], 3000)
    assert starts.tolist() == [2000, 4000]
    # the genome around the interval is too short: counted skip
    _, starts, skipped = tile_windows([Interval("c", 0, 100, 1)], lengths, ["c"], 20_000)
    assert starts.size == 0 and skipped == 1


# --------------------------------------------------------------------------------- HG38 module
def _hg38(folder: Path, **kwargs) -> HG38DataModule:
    dm = HG38DataModule(fasta=str(folder / "genome.fa"), bed=str(folder / "sequences.bed"), **kwargs)
    dm.setup("fit")
    return dm


def test_hg38_batches_are_next_base_pairs(hg38_copy: Path) -> None:
    dm = _hg38(hg38_copy, seq_len=256, batch_size=4)
    assert dm.vocab_size == 12
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape == batch["targets"].shape == (4, 256)
    tok = dm.tokenizer
    first = tok.encode(FastaGenome(hg38_copy / "genome.fa").fetch("chr17", 16384, 16384 + 257))
    assert torch.equal(batch["input_ids"][0], first[:256]) and torch.equal(batch["targets"][0], first[1:])
    assert len(dm.windows("train", 256)[1]) == 64 and len(dm.windows("val", 256)[1]) == 16


def test_hg38_train_order_changes_per_epoch_and_is_reproducible(hg38_copy: Path) -> None:
    dm = _hg38(hg38_copy, seq_len=512, batch_size=2)
    ds = dm._dataset("train", 512)
    epoch0 = [ds[i]["input_ids"][:8].tolist() for i in range(4)]
    epoch1 = [ds[len(ds) + i]["input_ids"][:8].tolist() for i in range(4)]
    assert epoch0 != epoch1
    assert epoch0 == [dm._dataset("train", 512)[i]["input_ids"][:8].tolist() for i in range(4)]


def test_hg38_rc_aug_flips_some_windows(hg38_copy: Path) -> None:
    plain = _hg38(hg38_copy, seq_len=128)._dataset("train", 128)
    aug = _hg38(hg38_copy, seq_len=128, rc_aug=True)._dataset("train", 128)
    tok = CharacterTokenizer()
    flipped = 0
    for i in range(16):
        a, b = plain[i], aug[i]
        if not torch.equal(a["input_ids"], b["input_ids"]):
            whole = torch.cat([a["input_ids"], a["targets"][-1:]])
            rc = tok.reverse_complement(whole)
            assert torch.equal(b["input_ids"], rc[:128])
            flipped += 1
    assert 0 < flipped < 16


def test_hg38_n_targets_carry_no_loss(tmp_path: Path) -> None:
    seq = _real_bases(600)
    seq = seq[:100] + "N" * 50 + seq[150:]
    _write_fasta(tmp_path / "genome.fa", {"chr17": seq})
    (tmp_path / "sequences.bed").write_text("chr17\t0\t512\tvalid\n")
    dm = HG38DataModule(fasta=str(tmp_path / "genome.fa"), bed=str(tmp_path / "sequences.bed"), seq_len=256)
    item = dm._dataset("val", 256)[0]
    assert (item["targets"][99:149] == IGNORE_INDEX).all() and (item["targets"][:99] != IGNORE_INDEX).all()
    assert (item["input_ids"][100:150] == dm.tokenizer.vocab["N"]).all()


def test_hg38_non_acgtn_in_the_genome_is_an_error(tmp_path: Path) -> None:
    seq = _real_bases(600)
    _write_fasta(tmp_path / "genome.fa", {"chr17": seq[:300] + "R" + seq[301:]})
    (tmp_path / "sequences.bed").write_text("chr17\t0\t512\tvalid\n")
    dm = HG38DataModule(fasta=str(tmp_path / "genome.fa"), bed=str(tmp_path / "sequences.bed"), seq_len=512)
    with pytest.raises(InvalidBaseError, match=r"genome.fa' chr17:0-513.*'R'"):
        dm._dataset("val", 512)[0]
    lenient = HG38DataModule(
        fasta=str(tmp_path / "genome.fa"), bed=str(tmp_path / "sequences.bed"), seq_len=512, unknown_bases="n"
    )
    assert lenient._dataset("val", 512)[0]["input_ids"][300] == lenient.tokenizer.vocab["N"]


def test_hg38_window_longer_than_the_genome(hg38_copy: Path) -> None:
    dm = _hg38(hg38_copy, seq_len=1 << 16)
    with pytest.raises(
        GenomeDataError, match=r"no window of length 65536 fits the 2 'train' interval.*lower data.seq_len"
    ):
        dm.train_dataloader()
    with pytest.warns(UserWarning, match="1 of 2 'train' intervals skipped"):
        dm.windows("train", 20000)  # the second interval cannot hold a 20000-base window


def test_hg38_missing_split(hg38_copy: Path) -> None:
    dm = _hg38(hg38_copy, val_split="validation")
    with pytest.raises(
        GenomeDataError, match=r"no 'validation' rows \(splits found: \['test', 'train', 'valid'\]\)"
    ):
        dm.val_dataloader()


def test_hg38_missing_files_point_at_prepare(tmp_path: Path) -> None:
    dm = HG38DataModule(
        fasta=str(tmp_path / "hg38" / "genome.fa"), bed=str(tmp_path / "hg38" / "sequences.bed")
    )
    with pytest.raises(DataNotFoundError, match="prepare_data.py hg38"):
        dm.setup("fit")


# ------------------------------------------------------------------------------ species module
@pytest.fixture
def apes_copy(tmp_path: Path) -> Path:
    shutil.copytree(APES, tmp_path / "great_apes")
    return tmp_path / "great_apes"


def _apes(folder: Path, **kwargs) -> SpeciesDataModule:
    kwargs.setdefault(
        "split_contigs", {"train": ["chr22_train"], "valid": ["chr22_valid"], "test": ["chr22_test"]}
    )
    dm = SpeciesDataModule(species_dir=str(folder), species=SPECIES, **kwargs)
    dm.setup("fit")
    return dm


def test_species_windows_come_from_their_species_and_split(apes_copy: Path) -> None:
    dm = _apes(apes_copy, seq_len=512, batch_size=8, num_eval_samples=16, train_batches_per_epoch=2)
    assert dm.num_classes == 4 and dm.class_names == SPECIES
    batch = next(iter(dm.val_dataloader()))
    assert batch["input_ids"].shape == (8, 512)
    assert batch["labels"].tolist() == [0, 1, 2, 3, 0, 1, 2, 3]  # class-balanced evaluation
    tok = dm.tokenizer
    for ids, label in zip(batch["input_ids"], batch["labels"]):
        valid = tok.encode(FastaGenome(apes_copy / f"{SPECIES[label]}.fa").fetch("chr22_valid", 0, 2048))
        windows = valid.unfold(0, 512, 1)
        assert (windows == ids).all(1).any(), "window not found in its species' validation region"
    train = next(iter(dm.train_dataloader()))
    assert train["input_ids"].shape == (8, 512) and set(train["labels"].tolist()) <= {0, 1, 2, 3}


def test_species_train_contigs_default_to_the_rest(apes_copy: Path) -> None:
    dm = _apes(
        apes_copy,
        seq_len=512,
        split_contigs={"train": None, "valid": ["chr22_valid"], "test": ["chr22_test"]},
    )
    assert dm.contigs_for("train", 512) == [["chr22_train"]] * 4


def test_species_empty_file(apes_copy: Path) -> None:
    (apes_copy / "gorilla.fa").write_text("")
    with pytest.raises(GenomeDataError, match=r"species file .*gorilla.fa' for 'gorilla' is empty"):
        _apes(apes_copy)


def test_species_missing_file(apes_copy: Path) -> None:
    (apes_copy / "orangutan.fa").unlink()
    with pytest.raises(DataNotFoundError, match=r"orangutan.fa.*prepare_data.py great_apes"):
        _apes(apes_copy)


def test_species_sequences_shorter_than_the_window(apes_copy: Path) -> None:
    dm = _apes(apes_copy, seq_len=4096)
    assert dm.contigs_for("train", 4096)  # 4096 bases: exactly one window per species
    with pytest.raises(
        GenomeDataError,
        match=r"species 'human' has no 'valid' region of at least 4096 bases "
        r"\(longest: 2048.*lower data.seq_len",
    ):
        dm.val_dataloader()


def test_species_split_contig_missing(apes_copy: Path) -> None:
    dm = _apes(
        apes_copy, split_contigs={"train": ["chr22_train"], "valid": ["chr21"], "test": ["chr22_test"]}
    )
    with pytest.raises(
        GenomeDataError, match=r"no sequence 'chr21'.*known: chr22_train, chr22_valid, chr22_test"
    ):
        dm.val_dataloader()


def test_species_windows_are_reproducible(apes_copy: Path) -> None:
    a = _apes(apes_copy, seq_len=256)._dataset("test", 256, 8, train=False)
    b = _apes(apes_copy, seq_len=256)._dataset("test", 256, 8, train=False)
    assert all(torch.equal(a[i]["input_ids"], b[i]["input_ids"]) for i in range(8))
    assert np.unique([a[i]["input_ids"][:32].numpy().tobytes() for i in range(8)]).size == 8


# ------------------------------------------------------------- species: fractions, folders, bad input
def test_species_fraction_regions_are_disjoint_and_windows_stay_inside(tmp_path: Path) -> None:
    shutil.copytree(BACTERIA, tmp_path / "species")
    dm = SpeciesDataModule(
        str(tmp_path / "species"),
        CLASSES,
        split_fractions=FRACTIONS,
        seq_len=256,
        batch_size=10,
        num_eval_samples=10,
        rc_aug=True,
    )
    dm.setup()
    spans = {
        split: [(r.start, r.end) for r in dm.regions_for(split, 256)[1]]
        for split in ("train", "valid", "test")
    }
    assert spans == {"train": [(0, 4800)], "valid": [(4800, 5400)], "test": [(5400, 6000)]}
    batch = next(iter(dm.test_dataloader()))
    assert batch["labels"].tolist() == [0, 1, 2, 3, 4] * 2
    for ids, label in zip(batch["input_ids"], batch["labels"]):
        genome = dm.genomes[label][0]
        contig = genome.names[0]
        test = dm.tokenizer.encode(genome.fetch(contig, 5400, 6000))
        assert (test.unfold(0, 256, 1) == ids).all(1).any(), "test window outside its species' test region"
    # reverse-complement augmentation: some training windows are the reverse complement of the genome
    train = dm._dataset("train", 256, 40, train=True)
    flipped = 0
    for i in range(40):
        item = train[i]
        genome = dm.genomes[int(item["labels"])][0]
        forward = dm.tokenizer.encode(genome.fetch(genome.names[0], 0, 4800)).unfold(0, 256, 1)
        flipped += not bool((forward == item["input_ids"]).all(1).any())
    assert 5 <= flipped <= 35


def test_species_folder_per_class_and_explicit_paths(tmp_path: Path) -> None:
    folder = tmp_path / "bacteria"
    (folder / "e_coli").mkdir(parents=True)
    shutil.copy(BACTERIA / "e_coli.fa", folder / "e_coli" / "k12.fa")
    shutil.copy(BACTERIA / "v_cholerae.fa", folder / "e_coli" / "other.fasta")  # two files, one class
    shutil.copy(BACTERIA / "s_aureus.fa", tmp_path / "staph.fa")
    dm = SpeciesDataModule(
        str(folder),
        {"e_coli": "e_coli", "s_aureus": str(tmp_path / "staph.fa")},
        split_fractions=FRACTIONS,
        seq_len=128,
    )
    dm.setup()
    assert [len(g) for g in dm.genomes] == [2, 1] and dm.class_names == ["e_coli", "s_aureus"]
    assert dm.contigs_for("valid", 128) == [["K-12-MG1655", "AE003852.1"], ["NC_002745.2"]]
    (folder / "empty").mkdir()
    with pytest.raises(GenomeDataError, match=r"species folder .*empty' for 'empty' has no FASTA file"):
        SpeciesDataModule(str(folder), ["e_coli", "empty"], split_fractions=FRACTIONS).setup()


def test_species_bad_input_is_named(tmp_path: Path) -> None:
    shutil.copytree(BACTERIA, tmp_path / "species")
    where = str(tmp_path / "species")
    with pytest.raises(ConfigError, match=r"data.species names \['e_coli'\] more than once"):
        SpeciesDataModule(where, ["e_coli", "human", "e_coli"], split_fractions=FRACTIONS)
    with pytest.raises(ConfigError, match="needs at least two classes"):
        SpeciesDataModule(where, ["e_coli"], split_fractions=FRACTIONS)
    overlapping = {"train": [0.0, 0.85], "valid": [0.8, 0.9], "test": [0.9, 1.0]}
    with pytest.raises(
        ConfigError, match=r"train \[0.0, 0.85\] overlaps valid \[0.8, 0.9\]; .* must be disjoint"
    ):
        SpeciesDataModule(where, CLASSES, split_fractions=overlapping)
    with pytest.raises(ConfigError, match=r"split_fractions.test=\[0.9, 1.2\] must satisfy"):
        SpeciesDataModule(where, CLASSES, split_fractions={**FRACTIONS, "test": [0.9, 1.2]})
    with pytest.raises(ConfigError, match=r"lists sequence 'chr1' under both train and test"):
        SpeciesDataModule(where, CLASSES, split_contigs={"train": ["chr1"], "valid": [], "test": ["chr1"]})
    # a species with fewer bases in a split than one window
    (tmp_path / "species" / "h_pylori.fa").write_text(
        ">tiny\n" + "ACGT" * 500 + "\n"
    )  # 2,000 bases: test = 200
    dm = SpeciesDataModule(where, CLASSES, split_fractions=FRACTIONS, seq_len=256)
    with pytest.raises(
        GenomeDataError,
        match=r"species 'h_pylori' has no 'test' region of at least 256 bases "
        r"\(longest: 200 of 200 bases in 1 region.*supply more sequence",
    ):
        dm.test_dataloader()
