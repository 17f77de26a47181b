"""DNA end to end on the shipped real sequences: prepare -> HG38 pretraining (loss falls) -> great-apes
fine-tuning from that checkpoint (confusion matrix, per-class accuracy)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from mambabench.data.seqlen_warmup import SequenceLengthWarmup, warmup_lengths
from mambabench.utils.build import build_datamodule, build_task
from mambabench.utils.errors import ConfigError
from mambabench.utils.run import train

ROOT = Path(__file__).resolve().parents[2]
TINY = [
    "model=mamba",
    "model.d_model=32",
    "model.n_layer=2",
    "data.seq_len=64",
    "logger=[]",
    "callbacks.progress_bar=null",
    "trainer.num_sanity_val_steps=0",
]


def _script():
    spec = importlib.util.spec_from_file_location("prepare_data", ROOT / "scripts" / "prepare_data.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def test_prepare_script_help_and_hg38_from_a_fasta(tmp_path: Path, capsys) -> None:
    script = _script()
    with pytest.raises(SystemExit):
        script.main(["--help"])
    text = capsys.readouterr().out
    assert "hg38" in text and "great_apes" in text and "genome.fa" in text
    genome = ROOT / "tests" / "data" / "datasets" / "hg38" / "genome.fa"
    assert script.main(["hg38", "--fasta", str(genome), "--segment", "256", "--data-dir", str(tmp_path)]) == 0
    rows = [line.split() for line in (tmp_path / "hg38" / "sequences.bed").read_text().splitlines()]
    assert len(rows) == 96 and {r[3] for r in rows} == {"train", "valid", "test"}
    assert (tmp_path / "hg38" / "genome.fa.fai").exists()
    assert script.main(["hg38", "--fasta", str(tmp_path / "missing.fa"), "--data-dir", str(tmp_path)]) == 1


def test_great_apes_prepare_keeps_regions_disjoint(tmp_path: Path) -> None:
    """A small MAF built from the real fixture sequences: every species gets the same disjoint regions."""
    from mambabench.data.prepare import great_apes
    from mambabench.data.prepare.common import read_fasta

    fixture = ROOT / "tests" / "data" / "datasets" / "great_apes"
    seqs = {
        code: dict(read_fasta(fixture / f"{name}.fa"))["chr22_train"]
        for code, name in great_apes.SPECIES.items()
    }
    lines = ["##maf version=1"]
    for block in range(20):  # 20 blocks of 200 bases in human order; alignment gaps are dropped
        lines.append("a")
        for code, seq in seqs.items():
            piece = seq[block * 200 : (block + 1) * 200]
            lines.append(f"s {code}.22 {block * 200} 200 + 4096 {piece[:100]}--{piece[100:]}")
        lines.append("")
    maf = tmp_path / "tiny.maf"
    maf.write_text("\n".join(lines) + "\n")
    args = type("Args", (), {"data_dir": str(tmp_path), "deb_dir": str(tmp_path), "maf": maf, "regions": 10})
    out = great_apes.prepare(args)
    human = dict(read_fasta(out / "human.fa"))
    assert {k: len(v) for k, v in human.items()} == {
        "chr22_train": 3200,
        "chr22_valid": 400,
        "chr22_test": 400,
    }
    assert human["chr22_valid"] == seqs["Hsap"][1200:1600] and human["chr22_test"] == seqs["Hsap"][2800:3200]
    assert dict(read_fasta(out / "gorilla.fa"))["chr22_valid"] == seqs["Ggor"][1200:1600]


def test_hg38_pretrain_then_great_apes_finetune(make_config) -> None:
    cfg = make_config(
        [
            "data=hg38",
            *TINY,
            "data.batch_size=16",
            "optimizer.lr=8e-3",
            "trainer.max_steps=30",
            "trainer.val_check_interval=30",
        ],
        subdir="pretrain",
    )
    metrics = train(cfg)
    # from ~3.6 bits (uniform over 12 tokens) towards the ~2 bits of base composition in 30 steps
    assert metrics["test/bits_per_token"] < 2.4, metrics
    ckpt = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    assert ckpt.exists()

    overrides = [
        "data=great_apes",
        "task=classification",
        "task.pooling=last",
        f"task.pretrained_ckpt={ckpt}",
        *TINY,
        "data.batch_size=8",
        "data.num_eval_samples=16",
        "trainer.max_steps=2",
        "trainer.val_check_interval=2",
    ]
    ft = make_config(overrides, subdir="finetune")
    task = build_task(ft, build_datamodule(ft))  # the backbone starts from the pretrained weights
    pretrained = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
    for name, value in task.network.state_dict().items():
        assert torch.equal(value, pretrained[f"network.{name}"]), name
    metrics = train(ft)
    for species in ("human", "chimpanzee", "gorilla", "orangutan"):
        assert f"test/accuracy_{species}" in metrics
    pngs = [p.name for p in (Path(ft.paths.output_dir) / "confusion").glob("*.png")]
    assert any(p.startswith("test_main") for p in pngs) and any(p.startswith("val_main") for p in pngs)

    wrong = make_config([*overrides, "model.d_model=16"], subdir="wrong")
    with pytest.raises(ConfigError, match="does not fit the network"):
        build_task(wrong, build_datamodule(wrong))
    missing = make_config([*overrides, "task.pretrained_ckpt=/nope.ckpt"], subdir="missing")
    with pytest.raises(ConfigError, match="'/nope.ckpt' does not exist"):
        build_task(missing, build_datamodule(missing))


def test_species_data_selects_classification(make_config) -> None:
    """data=species / data=great_apes pick task=classification themselves (as data=hg38 keeps task=lm);
    an explicit task=lm is an error naming the fix, and data.lm_targets=true trains next-base prediction on
    the windows on purpose."""
    for data in ("species", "great_apes"):
        cfg = make_config([f"data={data}", *TINY], subdir=data)
        assert cfg.task._target_.endswith("ClassificationTask"), data
    cfg = make_config(["data=great_apes", "task=lm", *TINY, "debug=fdr", "data.batch_size=2"], subdir="lm")
    with pytest.raises(ConfigError, match=r"drop task=lm .* or set data.lm_targets=true"):
        train(cfg)
    cfg = make_config(
        ["data=great_apes", "task=lm", "data.lm_targets=true", *TINY, "debug=fdr", "data.batch_size=2"],
        subdir="lm_on_purpose",
    )
    assert train(cfg)["train/loss"] > 0


SPECIES_TINY = [
    "experiment=dna/species/mini",
    "logger=[]",
    "callbacks.progress_bar=null",
    "trainer.num_sanity_val_steps=0",
]


def test_species_mini_pipeline(make_config, dataset_dir: Path) -> None:
    """experiment=dna/species/mini end to end on the shipped five-class slices, a few steps: per-class
    accuracy, confusion matrix, and a summary.json that names the preset, window length and model size."""
    import json

    cfg = make_config(
        [
            *SPECIES_TINY,
            "trainer.max_steps=3",
            "trainer.val_check_interval=3",
            "data.batch_size=5",
            "data.num_eval_samples=10",
            "data.seq_len=64",
        ]
    )
    metrics = train(cfg)
    for species in ("human", "e_coli", "h_pylori", "s_aureus", "v_cholerae"):
        assert f"test/accuracy_{species}" in metrics
    run = Path(cfg.paths.output_dir)
    assert any(p.name.startswith("test_main") for p in (run / "confusion").glob("*.png"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["choices"]["experiment"] == "dna/species/mini" and summary["data"]["seq_len"] == 64
    assert summary["params"]["total"] > 0 and summary["model"]["d_model"] == 32


@pytest.mark.slow
def test_species_mini_learns(make_config) -> None:
    """The species mini preset beats chance (20 %) clearly on held-out regions of the shipped real slices."""
    cfg = make_config(
        [
            *SPECIES_TINY,
            "trainer.max_steps=120",
            "trainer.val_check_interval=120",
            "data.num_eval_samples=200",
            "data.seq_len=128",
        ]
    )
    metrics = train(cfg)
    assert metrics["test/accuracy"] > 0.4, metrics


def test_sequence_length_warmup_plan() -> None:
    assert warmup_lengths(1 << 20, 1 << 10) == [1 << k for k in range(10, 21)]
    assert warmup_lengths(1024, 16384) == [1024]
    warmup = SequenceLengthWarmup(min_seq_len=16, epochs_per_stage=2, tokens_per_step=256)
    warmup.lengths, warmup.max_tokens = warmup_lengths(64, 16), 128
    # micro-batch of at most 128 tokens, 256 tokens per optimizer step at every length
    assert [warmup.plan(n) for n in warmup.lengths] == [(8, 2), (4, 2), (2, 2)]
    assert [warmup.stage_for_epoch(e) for e in range(7)] == [(16, 8), (16, 8), (32, 4), (32, 4)] + [
        (64, 2)
    ] * 3
    with pytest.raises(ConfigError, match="not a multiple of seq_len 512"):
        warmup.plan(512)


def test_gpu_dna_mini_script_smoke(tmp_path: Path, dataset_dir: Path) -> None:
    """scripts/gpu_dna_mini.sh in its CPU smoke mode on the shipped sequences: pretraining, one fine-tuning
    length that works and one that fails; the table has a row for each and the failure does not stop it."""
    import os
    import subprocess
    import sys

    out = tmp_path / "out"
    env = {
        **os.environ,
        "DNA_MINI_SMOKE": "1",
        "DNA_MINI_LENGTHS": "64 99999",
        "DNA_MINI_PRETRAIN_STEPS": "2",
        "DNA_MINI_FINETUNE_STEPS": "1",
        "OUT": str(out),
        "DNA_MINI_RUNS": str(tmp_path / "runs"),
        "PYTHON": sys.executable,
        "MAMBABENCH_DATA": str(dataset_dir),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_dna_mini.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    table = (out / "dna_mini_gpu.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert "bits/base" in rows["hg38_pretrain"]
    assert "**" in rows["great_apes_L64"] and "from hg38_pretrain" in rows["great_apes_L64"]
    assert "failed" in rows["great_apes_L99999"]
    assert (out / "hg38_pretrain.summary.json").exists() and (out / "great_apes_L64.summary.json").exists()


def test_species_baseline_finds_signal_when_there_is_some(tmp_path: Path, capsys) -> None:
    """scripts/dna_species_baseline.py on the shipped ape sequences, one species rewritten as its complement
    (not reversed: CpG becomes GpC): that species is recognised, so a chance result on real data means
    the windows carry no k-mer signal, not that the baseline is broken."""
    from mambabench.data.prepare.common import read_fasta, write_fasta

    spec = importlib.util.spec_from_file_location("baseline", ROOT / "scripts" / "dna_species_baseline.py")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    fixture = ROOT / "tests" / "data" / "datasets" / "great_apes"
    complement = str.maketrans("ACGTacgt", "TGCAtgca")
    for name in ("human", "chimpanzee"):
        records = list(read_fasta(fixture / f"{name}.fa"))
        if name == "chimpanzee":
            records = [(contig, seq.translate(complement)) for contig, seq in records]
        write_fasta(tmp_path / f"{name}.fa", records)
    assert (
        baseline.main(
            [
                "--species-dir",
                str(tmp_path),
                "--species",
                "human",
                "chimpanzee",
                "--k",
                "3",
                "--lengths",
                "256",
                "--windows",
                "20",
            ]
        )
        == 0
    )
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 3 | 256 |")][0]
    assert float(row.split("|")[3]) >= 0.9, row


@pytest.mark.slow
def test_dna_gpu_script_smoke(tmp_path: Path, dataset_dir: Path) -> None:
    """scripts/dna_gpu.py --smoke on the shipped slices: every section leaves its rows, tables and plots."""
    import csv

    spec = importlib.util.spec_from_file_location("dna_gpu", ROOT / "scripts" / "dna_gpu.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "out"
    assert script.main(["--out", str(out), "--data-dir", str(dataset_dir), "--smoke", "--budget", "600"]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert {r["section"] for r in rows} == {"species", "context", "size"} and len(rows) == 6
    assert all(r["value"] and not r["note"].startswith("failed") for r in rows), rows
    assert (out / "species.png").exists() and "2^20" in (out / "dna_gpu.md").read_text()
    assert list(out.glob("confusion_species_*.png"))
