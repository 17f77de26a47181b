"""Bad user files and values raise :class:`InputError` (or :class:`ConfigError`), which the command line
prints as one line without a traceback; the message names the file or key and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mambabench.data.audio_io import AudioFileError, read_audio
from mambabench.data.base import SequenceDataModule
from mambabench.data.genome import GenomeDataError
from mambabench.data.text_sources import TextDataError, list_text_files
from mambabench.data.tokenizers import (
    CharacterTokenizer,
    InvalidBaseError,
    TokenizerError,
    load_text_tokenizer,
)
from mambabench.models.pretrained import CONFIG_FILE, WEIGHTS_FILE, CheckpointFormatError, load_pretrained
from mambabench.utils.checkpoint import CheckpointError
from mambabench.utils.cli import _job_mistake
from mambabench.utils.errors import (
    ConfigError,
    DataNotFoundError,
    InputError,
    MissingFileError,
    MissingPackageError,
)


@pytest.mark.parametrize(
    "error",
    [
        AudioFileError,
        TextDataError,
        TokenizerError,
        InvalidBaseError,
        CheckpointFormatError,
        GenomeDataError,
        CheckpointError,
        MissingFileError,
        MissingPackageError,
    ],
)
def test_every_input_error_family_is_an_input_error(error: type[Exception]) -> None:
    assert issubclass(error, InputError) and issubclass(error, ValueError)
    assert _job_mistake(error("the file 'x' is bad; fix it"), "train") == "the file 'x' is bad; fix it"


def test_missing_files_stay_file_not_found_errors() -> None:
    missing = DataNotFoundError("data/x.fa", "python scripts/prepare_data.py hg38")
    assert isinstance(missing, FileNotFoundError) and isinstance(missing, InputError)
    assert (
        str(missing)
        == "data file 'data/x.fa' does not exist; prepare it with: python scripts/prepare_data.py hg38"
    )
    assert issubclass(MissingFileError, FileNotFoundError)
    assert issubclass(MissingPackageError, ImportError)


def test_a_missing_data_file_survives_the_trip_from_a_loader_worker() -> None:
    """Exceptions cross process boundaries pickled; DataNotFoundError takes two arguments, not its message."""
    import pickle

    back = pickle.loads(pickle.dumps(DataNotFoundError("data/x.fa", "python scripts/prepare_data.py hg38")))
    assert isinstance(back, DataNotFoundError) and back.path == "data/x.fa"
    assert str(back).endswith("prepare it with: python scripts/prepare_data.py hg38")


def test_a_missing_optional_package_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import torch

    from mambabench.eval.icl_baselines import decision_tree

    for name in ("sklearn", "sklearn.tree", "sklearn.ensemble"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingPackageError) as info:
        decision_tree(torch.zeros(1, 3, 2), torch.zeros(1, 3))
    assert (
        _job_mistake(info.value, "eval")
        == 'the tree baselines need scikit-learn: pip install "mambabench[icl]"'
    )


def test_text_corpus_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="text corpus '.*nowhere' does not exist; prepare one with"):
        list_text_files(tmp_path / "nowhere")
    with pytest.raises(InputError, match="no text files .* under '.*'; prepare a corpus"):
        list_text_files(tmp_path)


def test_tokenizer_errors_name_the_choices(tmp_path: Path) -> None:
    with pytest.raises(
        InputError, match="unknown tokenizer 'gpt3' .*: set data.tokenizer to one of gpt2, gpt-neox"
    ):
        load_text_tokenizer("gpt3")
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    with pytest.raises(
        InputError, match="'.*tokenizer.json' is not a readable tokenizer.json .*give data.tokenizer"
    ):
        _ = load_text_tokenizer(str(broken)).vocab_size
    with pytest.raises(ConfigError, match="data.unknown_bases must be one of"):
        CharacterTokenizer(unknown="skip")
    with pytest.raises(InputError, match="chr1:0-4 has 1 character"):
        CharacterTokenizer().encode("ACXT", where="chr1:0-4")


def test_unreadable_audio_file(tmp_path: Path) -> None:
    fake = tmp_path / "clip.wav"
    fake.write_text("not audio")
    with pytest.raises(
        InputError, match="cannot read audio file '.*clip.wav': .*; is it a WAV/FLAC/OGG file"
    ):
        read_audio(fake, 16000)


def test_bad_sizes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="data.batch_size must be >= 1, got 0"):
        SequenceDataModule(batch_size=0)


def _released_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mamba-tiny"
    folder.mkdir()
    (folder / CONFIG_FILE).write_text(json.dumps({"d_model": 8, "n_layer": 1, "vocab_size": 16}))
    (folder / WEIGHTS_FILE).write_bytes(b"PK\x03\x04 truncated")
    return folder


def test_released_checkpoint_with_broken_files(tmp_path: Path) -> None:
    folder = _released_folder(tmp_path)
    with pytest.raises(InputError, match="cannot read the weights '.*pytorch_model.bin' .*download it again"):
        load_pretrained(str(folder))
    (folder / CONFIG_FILE).write_text("{'d_model': 8")
    with pytest.raises(InputError, match="'.*config.json' is not valid JSON"):
        load_pretrained(str(folder))
    (folder / CONFIG_FILE).write_text("[1, 2]")
    with pytest.raises(InputError, match="holds a list, not a JSON object"):
        load_pretrained(str(folder))


def test_an_input_error_from_a_loader_worker_prints_its_own_message() -> None:
    """PyTorch re-raises a worker's error with the worker's traceback in front; the line keeps the message."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    class _BadBases(Dataset):
        def __len__(self) -> int:
            return 2

        def __getitem__(self, index: int) -> torch.Tensor:
            return CharacterTokenizer().encode("ACXT", where=f"window {index}")

    with pytest.raises(InvalidBaseError) as info:
        next(iter(DataLoader(_BadBases(), batch_size=1, num_workers=1)))
    assert "Original Traceback" in str(info.value)
    said = _job_mistake(info.value, "train")
    assert said is not None and said.startswith("window 0 has 1 character(s) outside the alphabet")
    assert "Traceback" not in said


def test_a_damaged_token_cache_is_named(tmp_path: Path) -> None:
    from mambabench.data.packed_tokens import META_FILE, PackedCorpus, build_packed_corpus

    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "a.jsonl").write_text(
        "".join(json.dumps({"text": f"document number {i}"}) + "\n" for i in range(40))
    )
    corpus = build_packed_corpus(
        tmp_path / "corpus", "bytes", tmp_path / "cache", val_fraction=0.2, workers=0, progress=False
    )
    assert PackedCorpus.open(corpus.folder).num_tokens("train") > 0
    (corpus.folder / "validation.bin").unlink()
    with pytest.raises(InputError, match="token cache '.*' lacks validation.bin; copy the whole folder"):
        PackedCorpus.open(corpus.folder)
    (corpus.folder / META_FILE).write_text('{"splits": ')
    with pytest.raises(InputError, match=f"token cache '.*' has a damaged {META_FILE} .*delete the folder"):
        PackedCorpus.open(corpus.folder)
