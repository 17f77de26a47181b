"""Few-shot word tasks: task files, prompts, answer masking, accuracy, and the task=fewshot_icl run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict

from mambabench.data.fewshot import ByteTokenizer, FewShotWordsDataModule, build_prompt, collate_fewshot
from mambabench.data.prepare.icl_tasks import wordnet_antonyms
from mambabench.tasks.fewshot import answer_accuracy
from mambabench.tasks.lm import IGNORE_INDEX
from mambabench.utils.errors import ConfigError
from mambabench.utils.run import train

TASKS = Path(__file__).resolve().parents[1] / "data" / "datasets" / "icl_tasks"


def test_shipped_task_set_is_real_and_loads() -> None:
    dm = FewShotWordsDataModule(str(TASKS), shots=[0, 3], num_queries=5, batch_size=5)
    assert set(dm.tasks) == {"antonyms", "country_capital", "first_letter", "uppercase"}
    capitals = dict(dm.tasks["country_capital"])
    assert all(len(pairs) == 48 for pairs in dm.tasks.values())
    assert all(country and capital for country, capital in capitals.items())
    assert sum(country != capital for country, capital in capitals.items()) > 40  # city-states aside
    assert dm.val_names[:2] == ["antonyms_k0", "antonyms_k3"]
    batch = next(iter(dm.test_dataloader()[1]))
    assert batch["input_ids"].shape[0] == 5 and (batch["input_ids"] < 256).all()
    with pytest.raises(ConfigError, match="known: antonyms"):
        FewShotWordsDataModule(str(TASKS), tasks=["translation"])


def test_prompt_and_answer_positions() -> None:
    tok = ByteTokenizer()
    prompt = build_prompt([("hot", "cold"), ("up", "down")], "wet")
    assert prompt == "hot -> cold\nup -> down\nwet ->"
    items = [(tok.encode(prompt), tok.encode(" dry")), (tok.encode("a ->"), tok.encode(" b"))]
    batch = collate_fewshot(items)
    row = batch["targets"][0]
    answer_at = (row != IGNORE_INDEX).nonzero()[:, 0]
    assert tok.decode(row[answer_at].tolist()) == " dry"
    assert answer_at[0] == len(prompt) - 1  # the last prompt token predicts the first answer token
    assert tok.decode(batch["input_ids"][0, : len(prompt) + 3].tolist()) == prompt + " dr"


def test_answer_accuracy_needs_every_answer_token() -> None:
    targets = torch.full((2, 5), IGNORE_INDEX)
    targets[:, 2:4] = torch.tensor([[7, 8], [7, 8]])
    logits = torch.zeros(2, 5, 10)
    logits[0, 2, 7] = logits[0, 3, 8] = 1.0  # both right
    logits[1, 2, 7] = logits[1, 3, 9] = 1.0  # second token wrong
    assert answer_accuracy(logits, targets).tolist() == [1.0, 0.0]


def test_wordnet_antonym_pointers(tmp_path: Path) -> None:
    data_adj = tmp_path / "data.adj"
    data_adj.write_text(
        "  1 license header line\n"
        "00001740 00 a 01 able 0 001 ! 00002098 a 0101 | having the means\n"
        "00002098 00 a 01 unable 0 001 ! 00001740 a 0101 | not having the means\n"
        "00002312 00 a 02 abaxial 0 dorsal(a) 4 001 ! 00002527 a 0101 | facing away\n"
        "00002527 00 a 02 adaxial 0 ventral 4 001 ! 00002312 a 0101 | nearest to\n"
    )
    assert wordnet_antonyms(data_adj) == [
        ("able", "unable"),
        ("unable", "able"),
        ("abaxial", "adaxial"),
        ("adaxial", "abaxial"),
    ]


def test_fewshot_task_runs_on_an_lm(make_config, tmp_path: Path) -> None:
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "copy.json").write_text(json.dumps([[w, w] for w in ["ab", "cd", "ef", "gh", "ij", "kl"]]))
    cfg = make_config(
        [
            "train=false",
            "task=fewshot_icl",
            "data=fewshot_words",
            "model=mamba",
            "logger=[]",
            "callbacks=none",
            "model.d_model=16",
            "model.n_layer=1",
            f"data.task_dir={tasks}",
            "data.shots=[0,2]",
            "data.num_queries=3",
        ]
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test/copy_k2/accuracy"] <= 1.0
    summary = json.loads((Path(cfg.paths.output_dir) / "summary.json").read_text())
    assert set(summary["fewshot_accuracy"]["test"]["copy"]) == {"0", "2"}
    assert (Path(cfg.paths.output_dir) / "fewshot" / "test_accuracy.png").exists()
    with open_dict(cfg):
        cfg.train = True
    with pytest.raises(ConfigError, match="train=false"):
        train(cfg)
