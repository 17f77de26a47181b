"""Text data: tokenizers against reference encodings, streaming readers, packed token cache, data module."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mambabench.data.packed_tokens import SPLITS, build_packed_corpus
from mambabench.data.prepare.tokenizer_files import read_reference_cases
from mambabench.data.text import TextDataModule
from mambabench.data.text_sources import ReadStats, TextDataError, iter_documents, list_text_files
from mambabench.data.tokenizers import ByteTokenizer, TokenizerError, load_text_tokenizer
from mambabench.utils.resolvers import scaling_layers

CASES = Path(__file__).resolve().parents[1] / "data" / "tokenizers"


# --------------------------------------------------------------------------------------- tokenizers
@pytest.mark.parametrize(
    "name, cases", [("gpt-neox", "ggml-vocab-mpt.gguf"), ("gpt2", "ggml-vocab-gpt-2.gguf")]
)
def test_bpe_tokenizers_match_reference_encodings(name: str, cases: str) -> None:
    """The 46 cases llama.cpp ships with each vocabulary (made with Hugging Face's tokenizers)."""
    tok = load_text_tokenizer(name)
    reference = read_reference_cases(CASES / f"{cases}.inp", CASES / f"{cases}.out")
    assert len(reference) == 46
    wrong = [text for text, ids in reference if tok.encode(text) != ids]
    assert wrong == []


def test_tokenizer_vocabularies() -> None:
    neox, gpt2 = load_text_tokenizer("gpt-neox"), load_text_tokenizer("gpt2")
    assert (neox.vocab_size, neox.eos_id) == (50277, 0)
    assert (gpt2.vocab_size, gpt2.eos_id) == (50257, 50256)
    assert neox.decode(neox.encode("Mamba: selective state spaces")) == "Mamba: selective state spaces"


def test_byte_tokenizer_round_trip() -> None:
    tok = ByteTokenizer()
    ids = tok.encode("héllo")
    assert ids == list("héllo".encode()) and tok.vocab_size == 258 and tok.eos_id == 256
    assert tok.decode([*ids, tok.eos_id]) == "héllo"


def test_unknown_tokenizer_lists_the_choices() -> None:
    with pytest.raises(TokenizerError, match="gpt2, gpt-neox, bytes"):
        load_text_tokenizer("gpt5")


# ------------------------------------------------------------------------------------------ readers
def _write_jsonl(path: Path, texts: list[str], source: str = "Pile-CC") -> Path:
    lines = [json.dumps({"text": t, "meta": {"pile_set_name": source}}) for t in texts]
    data = ("\n".join(lines) + "\n").encode()
    if path.name.endswith(".zst"):
        import zstandard

        data = zstandard.ZstdCompressor().compress(data)
    elif path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def test_readers_stream_every_format(tmp_path: Path) -> None:
    _write_jsonl(tmp_path / "a.jsonl.zst", ["one", "two"], "ArXiv")
    _write_jsonl(tmp_path / "b.jsonl", ["three"])
    _write_jsonl(tmp_path / "c.jsonl.gz", ["four"])
    (tmp_path / "d.txt").write_text("five")
    (tmp_path / "e.txt.gz").write_bytes(gzip.compress(b"six"))
    (tmp_path / "ignored.csv").write_text("x")
    files = list_text_files(tmp_path)
    assert [f.name for f in files] == ["a.jsonl.zst", "b.jsonl", "c.jsonl.gz", "d.txt", "e.txt.gz"]
    docs = [d for f in files for d in iter_documents(f)]
    assert [d.text for d in docs] == ["one", "two", "three", "four", "five", "six"]
    assert docs[0].source == "ArXiv" and docs[2].source == "Pile-CC"


def test_missing_text_field_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "ok"}) + "\n" + json.dumps({"content": "x"}) + "\n")
    with pytest.raises(TextDataError, match=r"line 2 of '.*bad.jsonl' has no 'text' field \(keys: content\)"):
        list(iter_documents(path))


def test_undecodable_bytes_are_counted_and_warned(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"text": "good"}\n{"text": "bad \xff\xfe"}\n{"text": "fine"}\n')
    (tmp_path / "notes.txt").write_bytes(b"caf\xe9 au lait")
    stats = ReadStats()
    texts = [d.text for f in list_text_files(tmp_path) for d in iter_documents(f, stats=stats)]
    assert texts == ["good", "fine", "caf au lait"]
    assert stats.skipped_lines == {str(path): 1} and stats.dropped_bytes == {str(tmp_path / "notes.txt"): 1}
    with pytest.warns(UserWarning, match="1 undecodable .* skipped .*mixed.jsonl"):
        stats.warn()


def test_empty_or_missing_corpus_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TextDataError, match="does not exist"):
        list_text_files(tmp_path / "nowhere")
    with pytest.raises(TextDataError, match="no text files"):
        list_text_files(tmp_path)
    (tmp_path / "empty.jsonl").write_text(json.dumps({"text": ""}) + "\n")
    with pytest.raises(TextDataError, match="gave no training documents .*1 empty"):
        build_packed_corpus(tmp_path, "bytes", tmp_path / ".tokens", workers=0, progress=False)


# ------------------------------------------------------------------------------------- packed tokens
def _corpus(root: Path, n: int = 60) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    _write_jsonl(root / "shard.jsonl", [f"document number {i} " * (1 + i % 3) for i in range(n)])
    return root


def test_packed_corpus_holds_every_document_once_with_eos(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    corpus = build_packed_corpus(
        root, "bytes", tmp_path / "cache", val_fraction=0.2, test_fraction=0.2, workers=0, progress=False
    )
    assert corpus.meta["dtype"] == "uint16"
    texts = [d.text for d in iter_documents(root / "shard.jsonl")]
    docs = []
    for split in SPLITS:
        tokens = np.asarray(corpus.tokens(split))
        assert tokens.dtype == np.uint16
        start = 0
        for end in np.flatnonzero(tokens == 256):
            docs.append(bytes(tokens[start:end].tolist()).decode())
            start = end + 1
        assert start == tokens.size  # every document ends with EOS
    assert sorted(docs) == sorted(texts)
    counts = {s: corpus.meta["splits"][s]["documents"] for s in SPLITS}
    assert sum(counts.values()) == 60 and min(counts.values()) > 0


def test_cache_reused_and_invalidated(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    first = build_packed_corpus(root, "bytes", tmp_path / "cache", workers=0, progress=False)
    stamp = (first.folder / "meta.json").stat().st_mtime_ns
    again = build_packed_corpus(root, "bytes", tmp_path / "cache", workers=0, progress=False)
    assert again.folder == first.folder and (again.folder / "meta.json").stat().st_mtime_ns == stamp
    other_tokenizer = build_packed_corpus(root, "gpt2", tmp_path / "cache", workers=0, progress=False)
    assert other_tokenizer.folder != first.folder and other_tokenizer.meta["vocab_size"] == 50257
    _write_jsonl(root / "shard.jsonl", ["changed text"] * 60)
    changed = build_packed_corpus(root, "bytes", tmp_path / "cache", workers=0, progress=False)
    assert changed.folder != first.folder


def test_splits_are_deterministic_by_document(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus")
    a = build_packed_corpus(
        root, "bytes", tmp_path / "a", val_fraction=0.2, test_fraction=0.2, workers=0, progress=False
    )
    b = build_packed_corpus(
        root, "bytes", tmp_path / "b", val_fraction=0.2, test_fraction=0.2, workers=0, progress=False
    )
    for split in SPLITS:
        assert np.array_equal(np.asarray(a.tokens(split)), np.asarray(b.tokens(split)))


@pytest.mark.slow  # spawns a tokeniser process (imports torch): ~10 s of CPU
def test_parallel_tokenisation_equals_serial(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus", n=300)
    serial = build_packed_corpus(root, "bytes", tmp_path / "s", workers=0, progress=False)
    parallel = build_packed_corpus(root, "bytes", tmp_path / "p", workers=1, progress=False)
    assert np.array_equal(np.asarray(serial.tokens("train")), np.asarray(parallel.tokens("train")))


# -------------------------------------------------------------------------------------- data module
def _module(root: Path, **kwargs) -> TextDataModule:
    args = {
        "tokenizer": "bytes",
        "seq_len": 16,
        "batch_size": 4,
        "val_fraction": 0.2,
        "test_fraction": 0.2,
        "tokenize_workers": 0,
        **kwargs,
    }
    dm = TextDataModule(str(root), **args)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_data_module_windows_and_exact_resume(tmp_path: Path) -> None:
    dm = _module(_corpus(tmp_path / "corpus"))
    assert dm.vocab_size == 258
    batches = list(dm.train_dataloader())
    first = batches[0]
    assert first["input_ids"].shape == (4, 16) and first["input_ids"].dtype == torch.long
    assert torch.equal(first["input_ids"][:, 1:], first["targets"][:, :-1])
    loader = dm.train_dataloader()
    it = iter(loader)
    next(it), next(it)
    state = loader.state_dict()
    resumed = _module(tmp_path / "corpus").train_dataloader()
    resumed.load_state_dict(state)
    assert torch.equal(next(iter(resumed))["input_ids"], batches[2]["input_ids"])
    # a token cache folder alone is a corpus too (packed tokens carried without the text)
    carried = TextDataModule(str(dm.corpus.folder), seq_len=16, batch_size=4)
    assert carried.vocab_size == 258 and carried.corpus.folder == dm.corpus.folder


def test_sequence_longer_than_split_names_the_corpus(tmp_path: Path) -> None:
    root = _corpus(tmp_path / "corpus", n=10)
    with pytest.raises(
        TextDataError, match=r"train split of '.*corpus' has \d+ tokens, fewer than one window"
    ):
        _module(root, seq_len=4096)


def test_scaling_layers_rule() -> None:
    assert scaling_layers(12, "mambabench.models.mixers.mamba.Mamba", None) == 24
    assert scaling_layers(12, "mambabench.models.mixers.hyena.Hyena", "mambabench.models.mlp.MLP") == 18
    assert (
        scaling_layers(12, "mambabench.models.mixers.attention.MHA", "mambabench.models.mlp.GatedMLP") == 12
    )
