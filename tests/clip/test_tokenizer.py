"""CLIP's BPE tokenizer (known answers, clean-up, padding, truncation, parity with transformers)
and the word tokenizer of anyseg's own CLIP."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest
import torch

from anyseg.clip.tokenizer import (
    BPE_INSTALL_HINT,
    BpeTokenizer,
    WordTokenizer,
    _read_merges,
    find_bpe_vocab,
)
from anyseg.errors import InvalidInputError


@pytest.fixture(scope="module")
def bpe() -> BpeTokenizer:
    return BpeTokenizer()


def test_known_answers(bpe: BpeTokenizer) -> None:
    assert bpe.vocab_size == 49408 and (bpe.sot_id, bpe.eot_id) == (49406, 49407)
    ids = bpe("red striped star")
    assert ids.shape == (1, 77) and ids.dtype == torch.long
    assert ids[0, :5].tolist() == [49406, 736, 22192, 1565, 49407]
    assert ids[0, 5:].eq(0).all()  # padded with zeros after the end token
    assert bpe.encode("a photo of a cat") == [320, 1125, 539, 320, 2368]
    assert bpe.encode("Hello, World!") == [3306, 267, 1002, 256]  # punctuation is its own token


def test_clean_up(bpe: BpeTokenizer) -> None:
    same = bpe.encode("red striped star")
    assert bpe.encode("RED Striped STAR") == same  # lower case
    assert bpe.encode("  red\t striped \n star ") == same  # whitespace collapsed
    assert bpe.encode("tom &amp; jerry") == bpe.encode("tom & jerry")  # HTML entities
    assert bpe.encode("tom &amp;amp; jerry") == bpe.encode("tom & jerry")  # doubly escaped
    assert bpe.decode(bpe.encode("It's a naïve café!")) == "it 's a naïve café !"
    assert bpe.encode("<|endoftext|>") == [49407]


def test_padding_and_truncation(bpe: BpeTokenizer) -> None:
    batch = bpe(["a", "a photo of a cat"], context_length=10)
    assert batch.shape == (2, 10)
    assert batch.argmax(1).tolist() == [2, 6]  # the end token is each row's highest id
    long = " ".join(["star"] * 100)
    cut = bpe(long)[0]
    assert cut.shape == (77,) and cut[0] == 49406 and cut[-1] == 49407
    assert cut[1:-1].eq(bpe.encode("star")[0]).all()
    with pytest.raises(InvalidInputError, match="more than the context length 77"):
        bpe(long, truncate=False)


def test_parity_with_transformers_clip_tokenizer(bpe: BpeTokenizer, tmp_path: Path) -> None:
    import transformers  # the dev extra (a missing package fails, never skips)

    merges = _read_merges(str(find_bpe_vocab()))
    (tmp_path / "vocab.json").write_text(json.dumps(bpe.encoder))
    lines = "\n".join(" ".join(m) for m in merges)
    (tmp_path / "merges.txt").write_text("#version: 0.2\n" + lines + "\n")
    hf = transformers.CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    texts = [
        "red striped star",
        "The Quick brown fox, jumping over 13 lazy dogs!",
        "don't stop-believing!!  it's   2024",
        "naïve café, Zürich & Paris; €5 (approx.)",
        "a photo of a cat 🙂🙂",
        "thechequeredemblemonthepanel",
    ]
    for text in texts:
        expected = hf(text)["input_ids"]
        assert bpe(text)[0, : len(expected)].tolist() == expected, text


def test_vocabulary_file_is_found_without_importing_open_clip_and_checked(tmp_path: Path) -> None:
    import sys

    path = find_bpe_vocab()
    assert path.name == "bpe_simple_vocab_16e6.txt.gz"
    assert "open_clip" not in sys.modules  # found, never imported
    bad = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    bad.write_bytes(gzip.compress(b"#version\na b\n"))
    with pytest.raises(InvalidInputError, match="SHA-256"):
        BpeTokenizer(bad)


def test_missing_vocabulary_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(InvalidInputError, match=BPE_INSTALL_HINT):
        find_bpe_vocab()


def test_word_tokenizer() -> None:
    tok = WordTokenizer(["a", "red", "star", "the", "striped"], context_length=8)
    assert tok.vocab_size == 8 and (tok.sot_id, tok.eot_id) == (6, 7)
    ids = tok(["A red star.", "the STRIPED  star"])
    assert ids.tolist() == [[6, 1, 2, 3, 7, 0, 0, 0], [6, 4, 5, 3, 7, 0, 0, 0]]
    assert tok("a a a a a a a a a")[0].tolist() == [6, 1, 1, 1, 1, 1, 1, 7]
    with pytest.raises(InvalidInputError, match=r"unknown word 'stripd'.*nearest: striped"):
        tok("a stripd star")
    with pytest.raises(InvalidInputError, match="unknown word 'zebra'"):
        tok("a zebra")
    with pytest.raises(InvalidInputError, match="unique lower-case"):
        WordTokenizer(["Red"])
