"""CLIP's tokenizers: the byte-level BPE of OpenAI's CLIP, and a word-level one for small CLIPs.

Both turn texts into (N, context_length) int64 ids: start token, the text's tokens, end token,
then zeros; the end token has the highest id of the vocabulary, so the text tower pools at each
row's argmax (as OpenAI's does). Too long texts are cut and keep their end token.

**BPE** (:class:`BpeTokenizer`): 49,408 tokens (256 byte symbols, the same with an end-of-word
mark, 48,894 merges, start 49406, end 49407), context 77. Texts are cleaned (HTML entities
unescaped, whitespace collapsed), lower-cased and pre-split by CLIP's pattern (which needs the
``regex`` package for Unicode letter classes). The merges file ``bpe_simple_vocab_16e6.txt.gz`` is
read from the installed ``open_clip_torch`` wheel (install it with ``pip install --no-deps
open_clip_torch``: only the file is used, the package is never imported) and checked against its
SHA-256. OpenAI's tokenizer also runs ``ftfy.fix_text`` first; that only changes mis-decoded
("mojibake") text, and is left out here.

**Words** (:class:`WordTokenizer`): one id per known word, the vocabulary stored with the model
(anyseg's own CLIP keeps it in its safetensors metadata). An unknown word is an error that names
the nearest known words.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import hashlib
import html
import importlib.util
import itertools
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from anyseg.errors import InvalidInputError

BPE_VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
BPE_VOCAB_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
BPE_INSTALL_HINT = "pip install --no-deps open_clip_torch"
BPE_VOCAB_SIZE = 49408
SOT, EOT = "<|startoftext|>", "<|endoftext|>"
_NUM_MERGES = 49152 - 256 - 2  # the merges of OpenAI's vocabulary (the file holds more)


class Tokenizer:
    """Shared behaviour: texts -> padded id rows. Subclasses implement :meth:`encode`."""

    vocab_size: int
    context_length: int
    sot_id: int
    eot_id: int

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without start and end tokens."""
        raise NotImplementedError

    def __call__(
        self,
        texts: str | Sequence[str],
        context_length: int | None = None,
        truncate: bool = True,
    ) -> torch.Tensor:
        """Ids (N, context_length) int64: start, tokens, end, zeros.

        Args:
            texts: one text or several.
            context_length: row length (default: the tokenizer's).
            truncate: cut too long texts (keeping the end token); False raises instead.
        """
        if isinstance(texts, str):
            texts = [texts]
        n = self.context_length if context_length is None else context_length
        if n < 2:
            raise InvalidInputError(f"context_length must be >= 2, got {n}")
        out = torch.zeros(len(texts), n, dtype=torch.long)
        for i, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > n:
                if not truncate:
                    raise InvalidInputError(
                        f"text {text[:40]!r}... has {len(ids)} tokens, more than the context "
                        f"length {n}"
                    )
                ids = [*ids[: n - 1], self.eot_id]
            out[i, : len(ids)] = torch.tensor(ids)
        return out


def clean_text(text: str) -> str:
    """HTML entities unescaped (twice, for doubly escaped text), whitespace collapsed,
    lower case."""
    text = html.unescape(html.unescape(text))
    return re.sub(r"\s+", " ", text).strip().lower()


# ---------------------------------------------------------------------------------------------
# Byte-level BPE


def _byte_symbols() -> tuple[list[str], dict[int, str]]:
    """One printable character per byte value: the bytes that are printable Latin-1 characters
    stand for themselves, the others take code points from 256 on. Returns the symbols in
    vocabulary order and the symbol of each byte."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    others = [b for b in range(256) if b not in set(printable)]
    symbol = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(others)}
    return [symbol[b] for b in printable + others], symbol


def find_bpe_vocab() -> Path:
    """The path of ``bpe_simple_vocab_16e6.txt.gz`` in the installed open_clip_torch wheel."""
    spec = importlib.util.find_spec("open_clip")  # locates the package without importing it
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        path = Path(folder) / BPE_VOCAB_FILE
        if path.is_file():
            return path
    raise InvalidInputError(
        f"the CLIP BPE vocabulary {BPE_VOCAB_FILE} was not found: install it with "
        f"`{BPE_INSTALL_HINT}` (only its vocabulary file is used), or pass its path"
    )


class BpeTokenizer(Tokenizer):
    """OpenAI CLIP's byte-level BPE tokenizer (module docstring)."""

    def __init__(self, vocab_path: str | os.PathLike[str] | None = None, context_length: int = 77):
        path = Path(vocab_path) if vocab_path is not None else find_bpe_vocab()
        merges = _read_merges(str(path))
        symbols, self.byte_symbol = _byte_symbols()
        vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges]
        vocab += [SOT, EOT]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.decoder = dict(enumerate(vocab))
        self.ranks = {pair: i for i, pair in enumerate(merges)}
        self.symbol_byte = {s: b for b, s in self.byte_symbol.items()}
        self.vocab_size = len(vocab)
        self.context_length = context_length
        self.sot_id, self.eot_id = self.encoder[SOT], self.encoder[EOT]
        self._pattern = _bpe_pattern()
        self._cache: dict[str, list[str]] = {}

    def _bpe(self, token: str) -> list[str]:
        """Merge a word's symbols pair by pair, lowest merge rank first."""
        if token in self._cache:
            return self._cache[token]
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            pairs = set(itertools.pairwise(word))
            best = min(pairs, key=lambda p: self.ranks.get(p, len(self.ranks)))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i + 1 < len(word) and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        ids: list[int] = []
        for piece in self._pattern.findall(clean_text(text)):
            if piece in (SOT, EOT):
                ids.append(self.encoder[piece])
                continue
            symbols = "".join(self.byte_symbol[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(symbols))
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of token ids (without padding; start and end tokens come back as text)."""
        data = bytearray()
        for i in ids:
            token = self.decoder[int(i)]
            if token in (SOT, EOT):
                data += token.encode()
                continue
            end = token.endswith("</w>")
            data += bytes(self.symbol_byte[c] for c in token.removesuffix("</w>"))
            data += b" " if end else b""
        return data.decode("utf-8", errors="replace").strip()


def _bpe_pattern() -> Any:
    try:
        import regex
    except ModuleNotFoundError:
        raise InvalidInputError(
            "the CLIP BPE tokenizer needs the `regex` package: pip install regex"
        ) from None
    # Special tokens, English contractions, letter runs, single digits, other non-space runs.
    return regex.compile(
        r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"
        r"|[^\s\p{L}\p{N}]+",
        regex.IGNORECASE,
    )


@functools.lru_cache(maxsize=4)
def _read_merges(path: str) -> list[tuple[str, str]]:
    data = Path(path).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != BPE_VOCAB_SHA256:
        raise InvalidInputError(
            f"{path}: SHA-256 {digest} is not that of CLIP's {BPE_VOCAB_FILE} "
            f"({BPE_VOCAB_SHA256}); reinstall it with `{BPE_INSTALL_HINT}`"
        )
    lines = gzip.decompress(data).decode("utf-8").split("\n")[1 : _NUM_MERGES + 1]
    merges = []
    for line in lines:
        a, b = line.split()
        merges.append((a, b))
    return merges


# ---------------------------------------------------------------------------------------------
# Words

_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*|\d+|[^\w\s]", re.UNICODE)
_IGNORED = set('.,;:!?"()[]')  # punctuation that carries nothing for a small vocabulary


class WordTokenizer(Tokenizer):
    """One id per word of a fixed vocabulary: 0 pad, 1..n the words, n+1 start, n+2 end."""

    def __init__(self, words: Sequence[str], context_length: int = 16) -> None:
        words = list(words)
        bad = [w for w in words if not w or w != clean_text(w) or " " in w]
        if bad or len(set(words)) != len(words):
            raise InvalidInputError(f"vocabulary words must be unique lower-case words: {bad}")
        self.words = tuple(words)
        self.ids = {w: i + 1 for i, w in enumerate(words)}
        self.vocab_size = len(words) + 3
        self.sot_id, self.eot_id = len(words) + 1, len(words) + 2
        self.context_length = context_length

    def encode(self, text: str) -> list[int]:
        ids = []
        for word in _WORD.findall(clean_text(text)):
            if word in _IGNORED:
                continue
            if word not in self.ids:
                near = difflib.get_close_matches(word, self.words, n=3, cutoff=0.5)
                hint = f"; nearest: {', '.join(near)}" if near else ""
                raise InvalidInputError(
                    f"unknown word {word!r} (this CLIP knows {len(self.words)} words{hint})"
                )
            ids.append(self.ids[word])
        return ids

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "word", "words": list(self.words), "context_length": self.context_length}
