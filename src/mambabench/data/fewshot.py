"""Few-shot word tasks for language models, in the style of Hendel et al. (task vectors, arXiv 2310.15916).

A task is a JSON file ``<task_dir>/<name>.json`` holding input/output word pairs, either
``[["hot", "cold"], ...]`` or ``[{"input": "hot", "output": "cold"}, ...]`` (Hendel et al.'s layout). A
prompt shows ``k`` demonstrations and a query, ``"x1 -> y1\\nx2 -> y2\\nxq ->"``, and the model must
continue with ``" yq"``. One evaluation loader per (task, k), named ``<task>_k<k>``: accuracy vs number
of demonstrations. Grazzi et al. (arXiv 2402.03170, RQ3) evaluate Mamba, RWKV and Transformer LMs so.

Tokenizers: bytes (UTF-8, 256 ids, no files needed) or any Hugging Face ``tokenizer.json``
(``tokenizer_file``; e.g. GPT-NeoX-20B's for the released Mamba checkpoints).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from mambabench.data.base import SequenceDataModule
from mambabench.tasks.lm import IGNORE_INDEX
from mambabench.utils.errors import ConfigError


class ByteTokenizer:
    """UTF-8 bytes as token ids 0..255."""

    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")


class FileTokenizer:
    """A Hugging Face ``tokenizers`` JSON file (needs the ``tokenizers`` package)."""

    def __init__(self, path: str | Path) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as err:
            raise ImportError(
                "tokenizer_file needs the 'tokenizers' package: pip install tokenizers"
            ) from err
        if not Path(path).exists():
            raise ConfigError(f"tokenizer file '{path}' does not exist")
        self._tokenizer = Tokenizer.from_file(str(path))
        self.vocab_size = self._tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self._tokenizer.decode(ids)


def load_word_task(path: Path) -> list[tuple[str, str]]:
    """Pairs of a task file; the error names the file and the expected layout."""
    try:
        items = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read task file '{path}': {err}") from err
    pairs = []
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and "input" in item and "output" in item:
            pairs.append((str(item["input"]), str(item["output"])))
        elif isinstance(item, (list, tuple)) and len(item) == 2:
            pairs.append((str(item[0]), str(item[1])))
        else:
            raise ConfigError(
                f"task file '{path}' holds {item!r}; expected [input, output] pairs or "
                "{'input': ..., 'output': ...} objects"
            )
    if len(pairs) < 2:
        raise ConfigError(f"task file '{path}' needs at least 2 pairs, found {len(pairs)}")
    return pairs


def build_prompt(
    demos: list[tuple[str, str]], query: str, separator: str = " ->", delimiter: str = "\n"
) -> str:
    """``"x1 -> y1\\nx2 -> y2\\nquery ->"``; the answer follows as ``" y"``."""
    return "".join(f"{x}{separator} {y}{delimiter}" for x, y in demos) + f"{query}{separator}"


class _FewShotDataset(Dataset):
    """Prompts of one (task, k): query ``i`` with ``k`` demonstrations drawn from the other pairs."""

    def __init__(
        self,
        pairs: list[tuple[str, str]],
        shots: int,
        num_queries: int,
        tokenizer,
        seed: int,
        separator: str,
        delimiter: str,
    ) -> None:
        rng = random.Random(seed)
        order = list(range(len(pairs)))
        rng.shuffle(order)
        self.items = []
        for index in order[: min(num_queries, len(pairs))]:
            others = [j for j in range(len(pairs)) if j != index]
            demos = [pairs[j] for j in rng.sample(others, min(shots, len(others)))]
            prompt = tokenizer.encode(build_prompt(demos, pairs[index][0], separator, delimiter))
            answer = tokenizer.encode(" " + pairs[index][1])
            self.items.append((prompt, answer))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[list[int], list[int]]:
        return self.items[index]


def collate_fewshot(items: list[tuple[list[int], list[int]]], pad_id: int = 0) -> dict[str, Tensor]:
    """Right-padded ``input_ids`` (prompt + answer[:-1]) and ``targets`` = the answer tokens at the
    positions that predict them, IGNORE_INDEX elsewhere."""
    length = max(len(p) + len(a) - 1 for p, a in items)
    input_ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    targets = torch.full((len(items), length), IGNORE_INDEX, dtype=torch.long)
    for row, (prompt, answer) in enumerate(items):
        sequence = prompt + answer[:-1]
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        targets[row, len(prompt) - 1 : len(prompt) - 1 + len(answer)] = torch.tensor(answer)
    return {"input_ids": input_ids, "targets": targets}


class FewShotWordsDataModule(SequenceDataModule):
    """Evaluation-only data: one loader per (task, number of demonstrations).

    Args:
        task_dir: folder of ``<task>.json`` files (``python scripts/prepare_data.py icl_tasks`` builds one;
            tests/data/icl_tasks ships a small set).
        tasks: task names to run (None: every file in the folder).
        shots: numbers of demonstrations.
        num_queries: queries per task (each with its own random demonstrations).
        tokenizer_file: a Hugging Face tokenizer.json; None: UTF-8 bytes.
        vocab_size: the model's vocabulary (None: the tokenizer's); set it to the checkpoint's.
    """

    def __init__(
        self,
        task_dir: str,
        tasks: list[str] | None = None,
        shots: list[int] | tuple[int, ...] = (0, 1, 2, 4, 8),
        num_queries: int = 64,
        tokenizer_file: str | None = None,
        vocab_size: int | None = None,
        separator: str = " ->",
        delimiter: str = "\n",
        batch_size: int = 16,
        seed: int = 0,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> None:
        super().__init__(batch_size, num_workers, pin_memory)
        root = Path(task_dir)
        files = (
            {p.stem: p for p in sorted(root.glob("*.json")) if p.stem != "manifest"} if root.is_dir() else {}
        )
        if not files:
            raise ConfigError(
                f"no task files (*.json) in data.task_dir '{root}'; build them with "
                f"python scripts/prepare_data.py icl_tasks or point task_dir at such a folder"
            )
        unknown = [t for t in tasks or [] if t not in files]
        if unknown:
            raise ConfigError(f"tasks {unknown} not in '{root}'; known: {', '.join(files)}")
        self.tasks = {name: load_word_task(files[name]) for name in (tasks or list(files))}
        self.shots = [int(k) for k in shots]
        self.num_queries, self.seed = num_queries, seed
        self.separator, self.delimiter = separator, delimiter
        self.tokenizer = FileTokenizer(tokenizer_file) if tokenizer_file else ByteTokenizer()
        self.vocab_size = vocab_size or self.tokenizer.vocab_size

    @property
    def val_names(self) -> list[str]:
        return [f"{task}_k{k}" for task in self.tasks for k in self.shots]

    def _loaders(self) -> list[DataLoader]:
        loaders = []
        for t, pairs in enumerate(self.tasks.values()):
            for k in self.shots:
                dataset = _FewShotDataset(
                    pairs,
                    k,
                    self.num_queries,
                    self.tokenizer,
                    self.seed + 1000 * t + k,
                    self.separator,
                    self.delimiter,
                )
                loaders.append(
                    DataLoader(
                        dataset,
                        batch_size=self.eval_batch_size,
                        shuffle=False,
                        collate_fn=collate_fewshot,
                        **self._loader_kwargs(),
                    )
                )
        return loaders

    def train_dataloader(self) -> DataLoader:
        raise ConfigError(
            "data=fewshot_words only evaluates: run with train=false (and task.pretrained_ckpt)"
        )

    def val_dataloader(self) -> list[DataLoader]:
        return self._loaders()

    def test_dataloader(self) -> list[DataLoader]:
        return self._loaders()
