"""rejectnet.bench.clinc150.data: reading, tokenizing and loading CLINC150."""

from __future__ import annotations

import json

import pytest
import torch

from rejectnet.bench import BenchError
from rejectnet.bench.clinc150 import prepare_data
from rejectnet.bench.clinc150.data import loader
from tests.text._support import tiny_recipe

TINY = tiny_recipe()


def test_prepare_data(clinc_dir, tmp_path):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps(["what is a giraffe", "paint a river"]))
    data = prepare_data(clinc_dir, TINY, ood={"extra": extra})
    assert data.clinc.num_classes == 3 and len(data.train) == 60
    assert list(data.ood) == ["oos_val", "oos_train", "extra"] and len(data.ood["extra"]) == 2
    assert data.pool is not None and data.pool.labels is None
    batch = data.train.collate([data.train[0], data.train[1]])
    assert sorted(batch) == ["attention_mask", "input_ids", "labels"]
    assert prepare_data(clinc_dir, TINY, outliers="none").pool is None


def test_prepare_data_errors_name_the_file(clinc_dir, tmp_path):
    with pytest.raises(BenchError, match="clinc150.json"):
        prepare_data(tmp_path / "nowhere", TINY)
    (clinc_dir / "wiki_sentences.txt").unlink()
    with pytest.raises(BenchError, match="outlier pool .*wiki_sentences.txt"):
        prepare_data(clinc_dir, TINY)
    assert prepare_data(clinc_dir, TINY, outliers="none").pool is None
    with pytest.raises(BenchError, match="taken"):
        prepare_data(clinc_dir, TINY, outliers="none", ood={"oos_val": clinc_dir / "x.txt"})
    with pytest.raises(BenchError, match="outliers must be 'pool' or 'none'"):
        prepare_data(clinc_dir, TINY, outliers="wiki")  # type: ignore[arg-type]


def test_loader_order_is_a_function_of_seed_and_epoch(clinc_dir):
    data = prepare_data(clinc_dir, TINY, outliers="none")
    plain = torch.cat([b["labels"] for b in loader(data.train, 16)])
    assert torch.equal(plain, data.train.labels)  # no seed: in order
    a, b = loader(data.train, 16, seed=3), loader(data.train, 16, seed=3)
    first = torch.cat([x["labels"] for x in a])
    assert torch.equal(first, torch.cat([x["labels"] for x in b]))
    assert not torch.equal(first, plain) and sorted(first.tolist()) == sorted(plain.tolist())
    a.sampler.set_epoch(1)  # type: ignore[attr-defined]
    second = torch.cat([x["labels"] for x in a])
    a.sampler.set_epoch(0)  # type: ignore[attr-defined]
    assert torch.equal(torch.cat([x["labels"] for x in a]), first)
    assert not torch.equal(second, first)
