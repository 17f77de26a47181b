"""Tokenizers: a character tokenizer for DNA and the text tokenizers for language modelling.

Text (:func:`load_text_tokenizer`): the paper's two BPE vocabularies, GPT-2 (scaling laws) and
GPT-NeoX-20B (the released Mamba models), shipped as ``tokenizer.json`` files built from registry packages
(:mod:`mambabench.data.prepare.tokenizer_files`), a byte-level tokenizer (MambaByte), or any
``tokenizer.json`` by path.

DNA: character tokenizer with HyenaDNA's token ids so checkpoints and configs line up.

Ids: ``[CLS]=0, [SEP]=1, [BOS]=2, [MASK]=3, [PAD]=4, [RESERVED]=5, [UNK]=6``, then the characters
(``A C G T N`` -> 7..11, vocab 12). Soft-masked (lower-case) bases fold to upper case unless
``keep_soft_mask`` is set, in which case lower-case bases get their own ids after the upper-case ones
(vocab 17), so a model can see the repeat annotation.

Encoding works on raw bytes through a 256-entry lookup table, so tokenizing a 1 Mb window is a single
vectorised gather; characters outside the alphabet raise :class:`InvalidBaseError` (or map to ``N``
with ``unknown="n"``, e.g. for IUPAC ambiguity codes such as R/Y/K/M).
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from mambabench.utils.errors import ConfigError, InputError

SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[BOS]", "[MASK]", "[PAD]", "[RESERVED]", "[UNK]")
CLS_ID, SEP_ID, BOS_ID, MASK_ID, PAD_ID, RESERVED_ID, UNK_ID = range(len(SPECIAL_TOKENS))
UNKNOWN_POLICIES = ("error", "n")
_COMPLEMENT = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}


class InvalidBaseError(InputError):
    """A sequence holds a character outside the tokenizer's alphabet; the message says where and how to fix."""


class CharacterTokenizer:
    """Maps DNA strings/bytes to int64 token ids and back.

    Args:
        characters: the alphabet, upper case (default ``"ACGTN"``; HyenaDNA's order).
        keep_soft_mask: give lower-case (soft-masked repeat) bases their own ids instead of folding
            them to upper case.
        unknown: ``"error"`` raises on any other character; ``"n"`` maps it to ``N`` (IUPAC codes).
    """

    def __init__(
        self, characters: str = "ACGTN", keep_soft_mask: bool = False, unknown: str = "error"
    ) -> None:
        characters = "".join(characters)
        if characters != characters.upper() or len(set(characters)) != len(characters) or not characters:
            raise ValueError(f"characters must be distinct upper-case letters, got {characters!r}")
        if unknown not in UNKNOWN_POLICIES:
            raise ConfigError(f"data.unknown_bases must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
        if unknown == "n" and "N" not in characters:
            raise ValueError("unknown='n' needs 'N' in the alphabet")
        self.characters = characters
        self.keep_soft_mask = keep_soft_mask
        self.unknown = unknown
        first = len(SPECIAL_TOKENS)
        self.vocab: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
        for i, ch in enumerate(characters):
            self.vocab[ch] = first + i
        if keep_soft_mask:
            for i, ch in enumerate(characters):
                self.vocab[ch.lower()] = first + len(characters) + i
        self.id_to_token = {i: tok for tok, i in self.vocab.items()}
        self.vocab_size = len(self.vocab)

        lut = np.full(256, -1, dtype=np.int64)
        for ch in characters:
            lut[ord(ch)] = self.vocab[ch]
            lut[ord(ch.lower())] = self.vocab[ch.lower()] if keep_soft_mask else self.vocab[ch]
        self._lut = lut
        # complement on ids (for reverse-complement augmentation); specials and unpaired letters map to themselves
        comp = np.arange(self.vocab_size, dtype=np.int64)
        for ch, other in _COMPLEMENT.items():
            if ch in characters and other in characters:
                comp[self.vocab[ch]] = self.vocab[other]
                if keep_soft_mask:
                    comp[self.vocab[ch.lower()]] = self.vocab[other.lower()]
        self._complement = torch.from_numpy(comp)
        n_ids = [self.vocab[k] for k in ("N", "n") if k in self.vocab]
        self.n_ids = torch.tensor(n_ids, dtype=torch.long)

    def encode(self, sequence: str | bytes, where: str = "sequence") -> Tensor:
        """sequence of length L -> int64 ids (L,). ``where`` (e.g. ``"chr1:100-1124"``) names the source
        in the error message when a character is outside the alphabet."""
        raw = sequence.encode("ascii", errors="replace") if isinstance(sequence, str) else bytes(sequence)
        codes = np.frombuffer(raw, dtype=np.uint8)
        ids = self._lut[codes]
        bad = ids < 0
        if bad.any():
            if self.unknown == "n":
                ids[bad] = self.vocab["N"]
            else:
                pos = int(np.flatnonzero(bad)[0])
                chars = sorted({chr(c) for c in np.unique(codes[bad])})
                raise InvalidBaseError(
                    f"{where} has {int(bad.sum())} character(s) outside the alphabet {self.characters!r} "
                    f"(first at offset {pos}: {chars[:10]}); clean the FASTA, or set data.unknown_bases=n "
                    f"to read them as N (IUPAC ambiguity codes)"
                )
        return torch.from_numpy(ids)

    def decode(self, ids: Tensor | list[int]) -> str:
        """ids (L,) -> string; special tokens are written as their names."""
        values = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        return "".join(self.id_to_token.get(int(i), "[UNK]") for i in values)

    def reverse_complement(self, ids: Tensor) -> Tensor:
        """ids (..., L) -> the reverse complement along the last dimension (A<->T, C<->G, N stays N)."""
        return self._complement.to(ids.device)[ids].flip(-1)

    def is_n(self, ids: Tensor) -> Tensor:
        """Boolean mask (same shape as ids) of the N (unknown-base) tokens."""
        return torch.isin(ids, self.n_ids.to(ids.device))


# ---------------------------------------------------------------------------------------------- text
TOKENIZER_FILES = Path(__file__).resolve().parent / "tokenizer_files"
#: named BPE tokenizers shipped with the package (built by :mod:`mambabench.data.prepare.tokenizer_files`)
NAMED_TOKENIZERS = {"gpt2": "gpt2.json.gz", "gpt-neox": "gpt-neox-20b.json.gz"}
BYTES = "bytes"


class TokenizerError(InputError):
    """A tokenizer name or file that cannot be used; the message lists what can."""


class ByteTokenizer:
    """Byte-level tokenizer (MambaByte, arXiv 2401.13660): ids 0..255 are the UTF-8 bytes, 256 is the
    end-of-document token, 257 padding (vocabulary 258)."""

    name = BYTES
    vocab_size = 258
    eos_id = 256
    pad_id = 257
    fingerprint = "bytes-v1"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [self.encode(t) for t in texts]

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(int(i) for i in ids if 0 <= int(i) < 256).decode("utf-8", errors="replace")


class BPETokenizer:
    """A Hugging Face ``tokenizer.json`` (gzipped or not) through the ``tokenizers`` library.

    ``vocab_size`` is the true vocabulary (GPT-NeoX-20B 50,277, GPT-2 50,257); models pad their
    embedding themselves (``model.pad_vocab_size_multiple``). ``fingerprint`` is the sha256 of the file's
    bytes, so a changed tokenizer invalidates token caches without loading the library.
    """

    def __init__(self, path: str | Path, name: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise TokenizerError(
                f"tokenizer file '{self.path}' does not exist; use one of "
                f"{', '.join([*NAMED_TOKENIZERS, BYTES])} or a path to a tokenizer.json"
            )
        self.name = name or self.path.name
        self.fingerprint = hashlib.sha256(self.path.read_bytes()).hexdigest()
        self._tokenizer = None

    @property
    def tokenizer(self):
        """The ``tokenizers.Tokenizer``, loaded on first use."""
        if self._tokenizer is None:
            try:
                from tokenizers import Tokenizer
            except ImportError:
                raise TokenizerError(
                    "BPE tokenizers need the 'tokenizers' package: pip install tokenizers"
                ) from None
            raw = self.path.read_bytes()
            try:
                if raw[:2] == b"\x1f\x8b":
                    raw = gzip.decompress(raw)
                self._tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
            except Exception as err:  # gzip, UTF-8 and the tokenizers library each raise their own type
                raise TokenizerError(
                    f"'{self.path}' is not a readable tokenizer.json ({type(err).__name__}: "
                    f"{(str(err).splitlines() or ['no detail'])[0][:200]}); give data.tokenizer one of "
                    f"{', '.join([*NAMED_TOKENIZERS, BYTES])} or the path of a Hugging Face tokenizer.json"
                ) from None
        return self._tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    @property
    def eos_id(self) -> int:
        for token in ("<|endoftext|>", "</s>", "<eos>"):
            found = self.tokenizer.token_to_id(token)
            if found is not None:
                return found
        raise TokenizerError(
            f"tokenizer '{self.path}' has no end-of-text token (<|endoftext|>, </s> or <eos>)"
        )

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


TextTokenizer = ByteTokenizer | BPETokenizer


def load_text_tokenizer(spec: str) -> TextTokenizer:
    """``gpt2`` | ``gpt-neox`` | ``bytes`` | a path to a ``tokenizer.json`` (``.gz`` allowed)."""
    if spec == BYTES:
        return ByteTokenizer()
    if spec in NAMED_TOKENIZERS:
        return BPETokenizer(TOKENIZER_FILES / NAMED_TOKENIZERS[spec], name=spec)
    if not Path(spec).exists():
        raise TokenizerError(
            f"unknown tokenizer {spec!r} (neither a known name nor an existing file): set data.tokenizer to "
            f"one of {', '.join([*NAMED_TOKENIZERS, BYTES])} or a path to a tokenizer.json"
        )
    return BPETokenizer(spec)
