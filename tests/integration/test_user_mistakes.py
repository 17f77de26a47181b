"""Mistakes a new user makes at the command line, made with each entry point as a user makes them:
each ends in one line on stderr that names the key or file and the fix, exit status 2, no traceback,
and no run folder left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# (entry point, arguments, what the one line must say)
MISTAKES = [
    (
        "train",
        ["model.d_model=abc"],
        "model.d_model=abc does not fit: d_model of LMHeadModel takes an integer",
    ),
    (
        "train",
        ["trainer.max_steps=ten"],
        "trainer.max_steps=ten does not fit: max_steps of Trainer takes an integer",
    ),
    ("train", ["model.mixer.d_state=1.5"], "d_state of Mamba takes an integer"),
    ("train", ["seed=abc"], "seed=abc does not fit"),
    (
        "train",
        ["trainer.devices=abc", "print_config=false"],
        "cannot build trainer (lightning.pytorch.trainer",
    ),
    ("train", ["d_model=32"], "it lives at model.d_model: write model.d_model=32"),
    ("train", ["max_steps=5"], "it lives at trainer.max_steps: write trainer.max_steps=5"),
    ("train", ["mixer=attention"], "model.mixer is a config group: write model/mixer=attention"),
    ("train", ["model.d_modle=3"], "did you mean model.d_model?"),
    ("train", ["data=nope"], "data=nope: no such config; options for data: "),
    ("train", ["ckpt_path=missing/last.ckpt"], "checkpoint 'missing/last.ckpt' does not exist"),
    ("train", ["resume_dir=missing_run"], "resume_dir 'missing_run' has no config.yaml"),
    (
        "train",
        ["data=hg38", "data.fasta=nowhere/genome.fa", "print_config=false"],
        "data file 'nowhere/genome.fa' does not exist; prepare it with: python scripts/prepare_data.py hg38",
    ),
    ("eval", [], "eval needs ckpt_path="),
    ("eval", ["ckpt_path=missing.ckpt"], "checkpoint 'missing.ckpt' does not exist"),
    ("eval", ["ckpt_path=missing.ckpt", "trainer.precision=bf17"], "precision of Trainer takes"),
    ("eval", ["max_steps=3"], "it lives at trainer.max_steps"),
    ("generate", [], "python src/generate.py needs ckpt_path: add ckpt_path="),
    ("generate", ["ckpt_path=missing.ckpt"], "checkpoint 'missing.ckpt' does not exist"),
    (
        "generate",
        ["temperature=hot"],
        "temperature=hot does not fit: temperature (default 1.0) takes a number",
    ),
    ("generate", ["d_model=3"], "'d_model' is not a key of this config"),
    # bad data, tokenizer, checkpoint and audio inputs (files made by the `answers` fixture)
    (
        "train",
        ["data=pile", "data.root=empty_corpus", "print_config=false"],
        "under 'empty_corpus'; prepare a corpus with 'python scripts/prepare_data.py pile'",
    ),
    (
        "train",
        ["data=pile", "data.root=corpus.jsonl", "data.tokenizer=gpt3", "print_config=false"],
        "unknown tokenizer 'gpt3' (neither a known name nor an existing file): set data.tokenizer to one of",
    ),
    ("train", ["data.batch_size=0", "print_config=false"], "data.batch_size must be >= 1, got 0"),
    (
        "train",
        ["model=pretrained", "model.pretrained=nowhere", "print_config=false"],
        "'nowhere' is neither a checkpoint folder nor a Hub name",
    ),
    (
        "train",
        ["data=youtubemix", "data.root=bad_music", "print_config=false"],
        "cannot read audio file 'bad_music/clip",
    ),
]


def _bad_inputs(root: Path) -> None:
    """An empty corpus folder, a one-line corpus and a music folder of files that are not audio."""
    (root / "empty_corpus").mkdir()
    (root / "corpus.jsonl").write_text('{"text": "hello world"}\n')
    (root / "bad_music").mkdir()
    for i in range(3):
        (root / "bad_music" / f"clip{i}.wav").write_text("not audio\n")


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    """All mistakes run in one interpreter from a temporary folder, which is also the project root (where
    outputs/ would go)."""
    root = tmp_path_factory.mktemp("user")
    _bad_inputs(root)
    cases = [[str(ROOT / "src" / f"{entry}.py"), args] for entry, args, _ in MISTAKES]
    env = {**os.environ, "PROJECT_ROOT": str(root), "HYDRA_FULL_ERROR": "0"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "integration" / "run_entry_points.py"), json.dumps(cases)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), root


@pytest.mark.parametrize(
    "index", range(len(MISTAKES)), ids=[f"{e}:{' '.join(a) or '(nothing)'}" for e, a, _ in MISTAKES]
)
def test_one_line_names_the_key_and_the_fix(answers: tuple[list[dict], Path], index: int) -> None:
    result = answers[0][index]
    expected = MISTAKES[index][2]
    said = [line for line in result["stderr"].splitlines() if line.strip()]
    assert "Traceback" not in result["stderr"] + result["stdout"], result["stderr"]
    assert result["code"] == 2, result
    assert len(said) == 1 and said[0].startswith("error: "), said
    assert expected in said[0], said[0]
    assert "+d_model" not in said[0].replace("'+d_model=...' would only add", "")


def test_mistakes_leave_no_run_folder(answers: tuple[list[dict], Path]) -> None:
    root = answers[1]
    left = sorted(str(p.relative_to(root)) for p in root.glob("outputs/*/*/*"))
    assert left == [] and not (root / "missing_run").exists(), f"half-empty run folders left behind: {left}"


def test_a_real_bug_keeps_its_traceback() -> None:
    """Only user mistakes are shortened: anything else is reported in full."""
    from mambabench.utils.cli import _job_mistake

    assert _job_mistake(RuntimeError("bug"), "train") is None
    assert _job_mistake(KeyError("x"), "train") is None
