"""TextDataset and its collate: dict batches of padded token ids."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from rejectnet.text import TextDataset, train_tokenizer

TEXTS = ["play jazz", "set an alarm for seven tomorrow morning", "weather", "book a table"]


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS * 3, vocab_size=120)


def test_labelled_batches(tok):
    ds = TextDataset(TEXTS, tok, labels=[0, 1, 2, 0])
    batches = list(DataLoader(ds, batch_size=2, collate_fn=ds.collate))
    assert [sorted(b) for b in batches] == [["attention_mask", "input_ids", "labels"]] * 2
    first, second = batches
    # each batch is padded to its own longest text
    assert first["input_ids"].shape[1] == len(tok.encode(TEXTS[1]).ids)
    assert second["input_ids"].shape[1] == len(tok.encode(TEXTS[3]).ids)
    assert first["labels"].dtype == torch.int64 and first["labels"].tolist() == [0, 1]
    assert first["attention_mask"].sum(1).tolist() == [len(tok.encode(t).ids) for t in TEXTS[:2]]


def test_unlabelled_batches_have_no_labels_key(tok):
    ds = TextDataset(TEXTS, tok)
    batch = ds.collate([ds[0], ds[1]])
    assert sorted(batch) == ["attention_mask", "input_ids"]


def test_truncation_counted(tok):
    with pytest.warns(UserWarning, match="1 of 4 texts"):
        ds = TextDataset(TEXTS, tok, max_length=5)
    assert ds.truncated == 1 and max(len(i) for i in ds.ids) == 5


@pytest.mark.parametrize(
    ("labels", "match"),
    [([0, 1], "holds 2 values for 4 texts"), ([0.5, 1, 2, 3], "int class indices")],
)
def test_bad_labels(tok, labels, match):
    with pytest.raises(ValueError, match=match):
        TextDataset(TEXTS, tok, labels=labels)
