"""CLINC150 and utterance-list readers on tiny synthetic files (never the shared data)."""

from __future__ import annotations

import json

import pytest

from rejectnet.text import load_clinc150, read_utterances


def _write(tmp_path, data):
    (tmp_path / "clinc150.json").write_text(json.dumps(data))
    return tmp_path


GOOD = {
    "train": [
        ["play jazz", "play_music"],
        ["book a table", "restaurant"],
        ["play rock", "play_music"],
    ],
    "val": [["play pop", "play_music"]],
    "test": [["reserve a table", "restaurant"]],
    "oos_val": [["how tall is a giraffe", "oos"]],
}


def test_reads_splits_and_sorted_intents(tmp_path):
    d = load_clinc150(_write(tmp_path, GOOD))
    assert d.intents == ("play_music", "restaurant") and d.num_classes == 2
    assert d.splits["train"].labels.tolist() == [0, 1, 0]
    assert d.splits["test"].texts == ["reserve a table"]
    assert d.splits["oos_val"].labels is None
    assert "oos_train" not in d.splits
    assert load_clinc150(tmp_path / "clinc150.json").intents == d.intents


def test_missing_file_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="clinc150.json"):
        load_clinc150(tmp_path)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"test": None}, "split 'test' must be a non-empty list"),
        ({"val": [["only text"]]}, r"val\[0\] must be a \[text, intent\] pair"),
        ({"test": [["fly me", "travel"]]}, "intents absent from 'train': \\['travel'\\]"),
        ({"train": [*GOOD["train"], ["a giraffe", "oos"]]}, "out-of-scope"),
    ],
)
def test_malformed_named(tmp_path, change, match):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(ValueError, match=match) as e:
        load_clinc150(_write(tmp_path, data))
    assert "clinc150.json" in str(e.value)


def test_not_json(tmp_path):
    (tmp_path / "clinc150.json").write_text("[1, 2")
    with pytest.raises(ValueError, match="not valid UTF-8 JSON"):
        load_clinc150(tmp_path)


def test_utterances_txt_and_json(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\n  second line  \n")
    (tmp_path / "b.json").write_text(json.dumps(["one", "two", " "]))
    assert read_utterances(tmp_path / "a.txt") == ["first line", "second line"]
    assert read_utterances(tmp_path / "b.json") == ["one", "two"]


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("x.csv", "a,b", "expected a .txt file .* got the extension '.csv'"),
        ("x.json", '{"a": 1}', "must hold a JSON list of strings"),
        ("x.json", '["a", 3]', "item 1 is not a string"),
        ("x.txt", "\n\n", "holds no text"),
    ],
)
def test_utterances_bad(tmp_path, name, content, match):
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=match):
        read_utterances(tmp_path / name, what="--ood x")


def test_utterances_bounded(tmp_path):
    (tmp_path / "big.txt").write_text("word\n" * 100)
    with pytest.raises(ValueError, match="limit"):
        read_utterances(tmp_path / "big.txt", max_bytes=100)
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_utterances(tmp_path / "nope.txt")
