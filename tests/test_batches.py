"""The one rule for batches and model inputs (rejectnet._batches)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rejectnet._batches import (
    batch_size,
    call_model,
    cat_inputs,
    check_keys,
    extract_logits,
    input_names,
    inputs_to,
    logits_of,
    pad_values_for,
    split_batch,
    split_inputs,
    take_rows,
)


def _tokens(n: int, length: int) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.arange(n * length).view(n, length) + 1,
        "attention_mask": torch.ones(n, length, dtype=torch.long),
    }


def test_hf_style_mapping_gives_named_inputs_and_labels() -> None:
    batch = {**_tokens(3, 4), "labels": torch.tensor([0, 1, 2])}
    x, y = split_inputs(batch)
    assert isinstance(x, dict) and list(x) == ["input_ids", "attention_mask"]
    assert y is not None and y.tolist() == [0, 1, 2]
    assert x["input_ids"] is batch["input_ids"]  # no copy, nothing edited


def test_single_input_key_stays_one_tensor() -> None:
    t = torch.zeros(2, 3)
    x, y = split_inputs({"image": t, "label": [1, 0]})
    assert x is t and y is not None and y.tolist() == [1, 0]


def test_an_extra_key_beside_an_input_key_is_passed_not_dropped() -> None:
    x, _ = split_inputs({"input": torch.zeros(2, 3), "attention_mask": torch.ones(2, 3)})
    assert isinstance(x, dict) and set(x) == {"input", "attention_mask"}
    with pytest.raises(TypeError, match="not named tensors"):
        split_batch({"input": torch.zeros(2, 3), "attention_mask": torch.ones(2, 3)})


def test_keys_select_inputs_and_refuse_a_key_that_would_be_dropped() -> None:
    batch = {**_tokens(2, 3), "token_type_ids": torch.zeros(2, 3), "cls": [0, 1]}
    with pytest.raises(ValueError, match="'token_type_ids' would be dropped"):
        split_inputs(batch, keys=(("input_ids", "attention_mask"), "cls"))
    x, y = split_inputs(batch, keys=(("input_ids", "attention_mask", "token_type_ids"), "cls"))
    assert isinstance(x, dict) and len(x) == 3 and y is not None and y.tolist() == [0, 1]


def test_a_missing_named_key_is_an_error_naming_it() -> None:
    with pytest.raises(TypeError, match="no 'labels'"):
        split_inputs({"img": torch.zeros(2, 3)}, keys=("img", "labels"))
    x, y = split_inputs({"img": torch.zeros(2, 3)}, keys=("img", "labels"), labels=False)
    assert isinstance(x, torch.Tensor) and y is None


def test_non_tensor_model_input_names_the_key() -> None:
    with pytest.raises(TypeError, match=r"\['text'\] must be a torch.Tensor"):
        split_inputs({"input_ids": torch.zeros(2, 3), "text": ["a", "b"]})


def test_tuple_batch_may_hold_named_inputs() -> None:
    x, y = split_inputs((_tokens(2, 3), torch.tensor([1, 0])))
    assert isinstance(x, dict) and y is not None and y.tolist() == [1, 0]


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        (("a",), TypeError),
        (("a", 3), TypeError),
        (((), "y"), ValueError),
        ((("a", "y"), "y"), ValueError),
    ],
)
def test_check_keys_refuses_bad_pairs(keys: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="keys"):
        check_keys(keys)


def test_batch_size_requires_agreeing_rows() -> None:
    assert batch_size(_tokens(5, 2)) == 5
    with pytest.raises(ValueError, match="disagree"):
        batch_size({"a": torch.zeros(2, 3), "b": torch.zeros(3, 3)})
    with pytest.raises(TypeError):
        batch_size({})


def test_cat_inputs_pads_sequences_without_truncating_or_editing() -> None:
    a, b = _tokens(2, 5), _tokens(3, 2)
    before = {k: v.clone() for k, v in b.items()}
    out = cat_inputs([a, b], pad_values={"input_ids": 99})
    assert isinstance(out, dict)
    assert out["input_ids"].shape == (5, 5) and out["attention_mask"].shape == (5, 5)
    assert out["input_ids"][2:, 2:].eq(99).all() and out["attention_mask"][2:, 2:].eq(0).all()
    assert torch.equal(out["input_ids"][:2], a["input_ids"])
    assert torch.equal(out["input_ids"][2:, :2], b["input_ids"])
    assert all(torch.equal(before[k], b[k]) for k in b)


def test_cat_inputs_refuses_mismatched_parts() -> None:
    with pytest.raises(ValueError, match="'attention_mask'"):
        cat_inputs([_tokens(1, 2), {"input_ids": torch.zeros(1, 2, dtype=torch.long)}])
    with pytest.raises(TypeError, match="cannot join"):
        cat_inputs([torch.zeros(1, 2), _tokens(1, 2)])
    with pytest.raises(ValueError, match="beyond the sequence"):
        cat_inputs([{"e": torch.zeros(1, 2, 3)}, {"e": torch.zeros(1, 2, 4)}])


def test_take_rows_and_inputs_to_leave_the_caller_dict_alone() -> None:
    x = _tokens(4, 2)
    rows = take_rows(x, slice(1, 3))
    assert isinstance(rows, dict) and batch_size(rows) == 2
    moved = inputs_to(x, "cpu")
    assert moved is not x and list(moved) == list(x)
    assert input_names(x) == ("input_ids", "attention_mask") and input_names(torch.zeros(1)) == ()


class _Named(nn.Module):
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return (input_ids * attention_mask).float().sum(1, keepdim=True)


def test_call_model_passes_keywords_and_names_an_unknown_key() -> None:
    out = call_model(_Named(), _tokens(2, 3))
    assert out.shape == (2, 1)
    with pytest.raises(TypeError, match="no argument 'token_type_ids'"):
        call_model(_Named(), {**_tokens(2, 3), "token_type_ids": torch.zeros(2, 3)})


def test_pad_values_follow_the_model_config() -> None:
    class Cfg:
        pad_token_id = 7

    m = nn.Linear(1, 1)
    m.config = Cfg()  # type: ignore[assignment]
    assert pad_values_for(m)["input_ids"] == 7 and pad_values_for(m)["attention_mask"] == 0


def test_extract_logits_and_logits_of_read_every_output_form() -> None:
    z = torch.randn(2, 3)

    class Out:
        logits = z

    for out in (z, {"logits": z}, Out(), (z, "hidden")):
        assert extract_logits(out) is z
    with pytest.raises(TypeError, match="rejectnet needs a logits tensor"):
        extract_logits({"scores": z})

    class Named(nn.Module):
        def forward(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"logits": input_ids.float() * 2}

    ids = torch.ones(2, 3, dtype=torch.long)
    assert torch.equal(logits_of(Named(), {"input_ids": ids}), ids.float() * 2)
    assert torch.equal(logits_of(nn.Identity(), z), z)
