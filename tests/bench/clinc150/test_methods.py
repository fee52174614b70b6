"""rejectnet.bench.clinc150.methods: the method list and the recipe's outlier signal."""

from __future__ import annotations

import pytest
import torch

from rejectnet.bench.clinc150 import CLINC150_METHODS, text_outlier_signal
from rejectnet.bench.clinc150.methods import RUNNERS, check_methods
from rejectnet.text import train_tokenizer


def test_every_method_has_a_runner_and_bad_lists_are_refused():
    assert set(CLINC150_METHODS) == set(RUNNERS)
    assert check_methods(None) == CLINC150_METHODS
    assert check_methods(["rejectnet", "msp", "rejectnet"]) == ("rejectnet", "msp")
    with pytest.raises(TypeError, match="not one str"):
        check_methods("msp")
    with pytest.raises(ValueError, match=r"unknown: \['odin'\]"):
        check_methods(["odin"])
    with pytest.raises(ValueError, match="at least one"):
        check_methods([])


def test_recipe_signal_is_text_recipe_and_keeps_special_tokens():
    tok = train_tokenizer(["play some jazz", "set an alarm", "book a table"] * 3, vocab_size=60)
    with_pool = text_outlier_signal(tok, pool=True)
    assert with_pool.uses_pool
    assert [(type(s).__name__, w) for s, w in with_pool.parts] == [
        ("PoolRows", 0.5),
        ("RandomTokens", 0.5),
    ]
    alone = text_outlier_signal(tok, pool=False)
    assert not alone.uses_pool and [type(s).__name__ for s, _ in alone.parts] == ["RandomTokens"]
    enc = tok.encode_batch(["play some jazz", "set an alarm"])
    ids = torch.tensor([e.ids + [0] * (5 - len(e.ids)) for e in enc])
    x = {"input_ids": ids, "attention_mask": (ids != 0).long()}
    torch.manual_seed(0)
    out = alone.outlier_batch(x, torch.tensor([0, 1]), None, 6)
    assert out["input_ids"].shape == (6, 5)
    assert bool((out["input_ids"][:, 0] == tok.token_to_id("[CLS]")).all())
