"""Tokenizer training, JSON save/load, encoding and padding (synthetic texts only)."""

from __future__ import annotations

import json

import pytest
import torch

from rejectnet.text import (
    SPECIAL_TOKENS,
    encode,
    encode_ids,
    load_tokenizer,
    pad_ids,
    save_tokenizer,
    train_tokenizer,
)

TEXTS = [
    "Book a table for two",
    "play some jazz music",
    "what is the weather tomorrow",
    "set an alarm for seven am",
    "transfer money to my savings account",
] * 4


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS, vocab_size=200)


@pytest.mark.parametrize("model", ["wordpiece", "bpe"])
def test_specials_have_fixed_ids_and_texts_are_wrapped(model):
    t = train_tokenizer(TEXTS, vocab_size=200, model=model)
    assert [t.token_to_id(s) for s in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    ids = t.encode("play some jazz").ids
    assert ids[0] == 2 and ids[-1] == 3 and len(ids) > 2


def test_wordpiece_is_the_same_in_every_process():
    import subprocess
    import sys

    code = (
        "import json; from rejectnet.text import train_tokenizer; "
        f"t = train_tokenizer({TEXTS!r} + ['zz yy xx ww'] * 2, vocab_size=60); "
        "print(json.dumps(sorted(t.get_vocab().items())))"
    )
    runs = [
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    assert runs[0].stdout == runs[1].stdout and runs[0].stdout.strip()


def test_wordpiece_vocab_order_and_fallback_to_characters():
    t = train_tokenizer(["b a", "a c", "a b", "zebra"], vocab_size=100)
    vocab = t.get_vocab()
    assert vocab["a"] < vocab["b"] < vocab["##a"]  # characters by count, then "##" pieces
    assert vocab["zebra"] > vocab["##z"]  # whole words after every character piece
    assert t.encode("bac").tokens == ["[CLS]", "b", "##a", "##c", "[SEP]"]
    cut = train_tokenizer(["b a", "a c", "a b", "zebra", "zebra"], vocab_size=16)
    assert len(cut.get_vocab()) == 16 and "zebra" not in cut.get_vocab()


def test_lower_cases(tok):
    assert tok.encode("PLAY Some JAZZ").ids == tok.encode("play some jazz").ids


def test_save_load_roundtrip_is_json(tok, tmp_path):
    p = save_tokenizer(tok, tmp_path / "tok.json")
    json.loads(p.read_text())  # a JSON file, no pickle
    back = load_tokenizer(p)
    assert back.encode("set an alarm").ids == tok.encode("set an alarm").ids


def test_load_refuses_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.json.*not a tokenizer JSON"):
        load_tokenizer(bad)
    with pytest.raises(ValueError, match="not a regular file"):
        load_tokenizer(tmp_path)


def test_encode_pads_to_longest_with_mask(tok):
    batch = encode(tok, ["play jazz", "transfer money to my savings account"])
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert ids.dtype == mask.dtype == torch.int64
    assert ids.shape == mask.shape and ids.shape[1] == mask[1].sum().item()
    short = int(mask[0].sum())
    assert short < ids.shape[1]
    assert (ids[0, short:] == 0).all() and (mask[0, short:] == 0).all()
    assert ids[0, short - 1].item() == tok.token_to_id("[SEP]")


def test_encode_never_truncates_without_max_length(tok):
    long = " ".join(["play some jazz music"] * 30)
    batch = encode(tok, [long])
    assert batch["input_ids"].shape[1] == len(tok.encode(long).ids) > 64


def test_truncation_only_to_explicit_max_length_and_reported(tok):
    long = " ".join(["play some jazz music"] * 10)
    with pytest.warns(UserWarning, match="1 of 2 texts were longer than max_length=8"):
        batch = encode(tok, [long, "play jazz"], max_length=8)
    assert batch["input_ids"].shape[1] == 8
    assert batch["input_ids"][0, -1].item() == tok.token_to_id("[SEP]")
    ids, cut = encode_ids(tok, ["play jazz"], max_length=8)
    assert cut == 0 and ids == [tok.encode("play jazz").ids]


@pytest.mark.parametrize(
    ("texts", "exc", "match"),
    [
        ("play jazz", TypeError, "sequence of str"),
        (["ok", 3], TypeError, r"texts\[1\] must be a str"),
        ([], ValueError, "empty"),
    ],
)
def test_encode_bad_texts(tok, texts, exc, match):
    with pytest.raises(exc, match=match):
        encode(tok, texts)


def test_bad_arguments():
    with pytest.raises(ValueError, match="max_length must be an int >= 3"):
        encode_ids(train_tokenizer(TEXTS, vocab_size=100), ["a"], max_length=2)
    with pytest.raises(ValueError, match="model must be 'wordpiece' or 'bpe'"):
        train_tokenizer(TEXTS, model="unigram")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="texts is empty"):
        train_tokenizer([])
    with pytest.raises(ValueError, match=r"seqs\[1\] is empty"):
        pad_ids([[2, 3], []])
