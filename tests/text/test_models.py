"""small_bert: a randomly initialised BertForSequenceClassification from a config."""

from __future__ import annotations

import pytest
import torch

from rejectnet.text import small_bert


def test_shapes_and_classifier_layer():
    m = small_bert(5, 40, hidden_size=32, num_layers=1, num_heads=2, max_length=16)
    ids = torch.randint(5, 40, (3, 9))
    mask = torch.ones_like(ids)
    mask[0, 4:] = 0
    out = m(input_ids=ids, attention_mask=mask).logits
    assert out.shape == (3, 5)
    assert isinstance(m.classifier, torch.nn.Linear) and m.classifier.in_features == 32
    assert m.config.pad_token_id == 0 and m.config.num_hidden_layers == 1


def test_mask_hides_padding():
    torch.manual_seed(0)
    m = small_bert(3, 40, hidden_size=32, num_layers=1).eval()
    ids = torch.randint(5, 40, (1, 6))
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.int64)], 1)
    mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 4)], 1).long()
    a = m(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    b = m(input_ids=padded, attention_mask=mask).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"hidden_size": 30, "num_heads": 4}, ValueError, "multiple of num_heads"),
        ({"num_layers": 0}, ValueError, "num_layers must be a positive int"),
        ({"num_layers": 1.5}, TypeError, "num_layers"),
        ({"dropout": 1.0}, ValueError, "dropout must be in"),
        ({"pad_token_id": 40}, ValueError, "below vocab_size"),
    ],
)
def test_bad_config(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        small_bert(3, 40, **kwargs)
