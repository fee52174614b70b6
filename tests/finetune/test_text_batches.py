"""Dict batches of named tensors (Hugging Face style) through the fine-tuners (issue 21).

A tiny ``BertForSequenceClassification`` from a ``BertConfig`` (2 layers, hidden 32,
vocabulary 100, random weights) trains on ``{"input_ids", "attention_mask", "labels"}``
batches; outlier token sequences of other lengths are right-padded with the model's pad
id into the one forward pass; a key that would be dropped raises, naming it.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from rejectnet import OutlierExposureFinetuner, RejectHead, SelfSupervisedOODFinetuner
from rejectnet.finetune import Finetuner
from rejectnet.finetune.batching import join_step_inputs, pad_values_of
from rejectnet.finetune.streams import OutlierStream
from rejectnet.integrations import OutlierPairs
from rejectnet.losses import OutlierExposureLoss
from tests.reliability._helpers import bit_equal, snapshot

transformers = pytest.importorskip("transformers")

C, PAD = 3, 1


def _bert(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=64, num_labels=C, pad_token_id=PAD,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def _tokens(n: int, length: int, seed: int, label: bool = True) -> dict[str, torch.Tensor]:
    """Class c's utterances use tokens 10c..10c+9: a separable toy intent task."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, C, (n,), generator=g)
    ids = 10 * y[:, None] + torch.randint(10, 20, (n, length), generator=g)
    out = {"input_ids": ids, "attention_mask": torch.ones(n, length, dtype=torch.long)}
    if label:
        out["labels"] = y
    return out


def _outliers(n: int, length: int, seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(60, 100, (n, length), generator=g)
    return {"input_ids": ids, "attention_mask": torch.ones(n, length, dtype=torch.long)}


def _loaders() -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    in_loader = [_tokens(8, 6, seed=i) for i in range(4)]
    # outlier batches of two other lengths: re-cut across batches and padded
    out_loader = [_outliers(10, 9 if i % 2 else 7, seed=100 + i) for i in range(4)]
    return in_loader, out_loader


def _accuracy(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    model.eval()
    with torch.no_grad():
        right = sum(
            int((model(**{k: v for k, v in b.items() if k != "labels"}).logits[:, :C].argmax(1)
                 == b["labels"]).sum())
            for b in batches
        )  # fmt: skip
    return right / sum(int(b["labels"].shape[0]) for b in batches)


def test_a_bert_trains_on_dict_batches_with_padded_outliers() -> None:
    model = _bert()
    in_loader, out_loader = _loaders()
    # AdamW (the transformer default, see test_optim.py) at a from-scratch rate
    ft = OutlierExposureFinetuner(model, epochs=5, lr=1e-3, progress=False, outlier_ratio=2.0)
    history = ft.fit(in_loader, out_loader)
    assert len(history) == 5 and all(e.out_loss is not None for e in history.epochs)
    assert _accuracy(model, in_loader) > 0.8, history  # chance is 1/3


def _reject_head_takes_named_inputs() -> bool:
    net = RejectHead.wrap(_bert(), k=2)
    try:
        net(**{k: v for k, v in _tokens(2, 4, 0).items() if k != "labels"})
    except TypeError:
        return False
    return True


def test_the_paper_stage_two_on_a_bert() -> None:
    if not _reject_head_takes_named_inputs():
        pytest.skip("RejectHead takes named inputs once the core helper's issue-21 work lands")
    net = RejectHead.wrap(_bert(), k=2)
    in_loader, out_loader = _loaders()
    ft = SelfSupervisedOODFinetuner(net, epochs=2, progress=False, outlier_ratio=2.0)
    history = ft.fit(in_loader, out_loader, val_loader=in_loader[:1])
    assert history[-1].out_on_reject is not None and history[-1].val_accuracy is not None


def test_one_forward_pads_in_distribution_and_outliers_to_one_length() -> None:
    """The step's one forward sees [x_in; x_out] padded with the model's pad id and mask 0."""
    model = _bert()
    seen: list[dict[str, torch.Tensor]] = []
    model.register_forward_pre_hook(
        lambda _m, _a, kw: seen.append({k: v.clone() for k, v in kw.items()}), with_kwargs=True
    )
    in_loader, out_loader = _loaders()
    Finetuner(model, OutlierExposureLoss(), epochs=1, outlier_ratio=2.0, progress=False).fit(
        in_loader[:1], out_loader
    )
    step = seen[-1]  # the preflight's call came first
    ids, mask = step["input_ids"], step["attention_mask"]
    assert ids.shape == (8 + 16, 9) and mask.shape == ids.shape  # never truncated
    assert bool((ids[:8, 6:] == PAD).all()) and bool((mask[:8, 6:] == 0).all())
    assert torch.equal(ids[:8, :6], in_loader[0]["input_ids"])
    # the outliers: 10 rows of length 7 then 6 of length 9, padded to 9
    assert torch.equal(ids[8:18, :7], out_loader[0]["input_ids"])
    assert bool((ids[8:18, 7:] == PAD).all()) and bool((mask[8:18, 7:] == 0).all())
    assert torch.equal(ids[18:, :9], out_loader[1]["input_ids"][:6])
    assert pad_values_of(RejectHead.wrap(_bert(), k=2))["input_ids"] == PAD  # found inside


def test_join_and_stream_never_truncate_nor_drop_a_key() -> None:
    a, b = _outliers(2, 3, 0), _outliers(3, 5, 1)
    joined = join_step_inputs(a, b, {"input_ids": PAD})
    assert isinstance(joined, dict) and set(joined) == {"input_ids", "attention_mask"}
    assert joined["input_ids"].shape == (5, 5)
    stream = OutlierStream([a, b], pad_values={"input_ids": PAD})
    first = stream.take(4)  # 2 rows of length 3 and 2 of length 5
    assert isinstance(first, dict) and first["input_ids"].shape == (4, 5)
    assert isinstance(stream.leftover, dict) and stream.leftover["input_ids"].shape == (1, 5)
    assert torch.equal(a["input_ids"], _outliers(2, 3, 0)["input_ids"])  # caller's untouched


def test_a_key_that_would_be_dropped_raises_naming_it() -> None:
    model = _bert()
    before = snapshot(model)
    in_loader, out_loader = _loaders()
    ft = OutlierExposureFinetuner(model, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"key 'attention_mask' would be dropped"):
        ft.fit(in_loader, out_loader, keys=(("input_ids",), "labels"))
    assert bit_equal(snapshot(model), before)


def test_keys_name_other_label_and_input_keys() -> None:
    """keys= on the constructor or on fit; the label key is keys[1]."""
    in_loader = [
        {"ids": b["input_ids"], "input_mask": b["attention_mask"], "intent": b["labels"]}
        for b in _loaders()[0]
    ]

    class Renamed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = _bert()

        def forward(self, ids: torch.Tensor, input_mask: torch.Tensor) -> torch.Tensor:
            return self.bert(input_ids=ids, attention_mask=input_mask).logits  # type: ignore[no-any-return]

    keys: Any = (("ids", "input_mask"), "intent")
    outliers = [{"ids": o["input_ids"], "input_mask": o["attention_mask"]} for o in _loaders()[1]]
    for where in ("constructor", "fit"):
        model = Renamed()
        kw = {"keys": keys} if where == "constructor" else {}
        ft = OutlierExposureFinetuner(model, epochs=1, progress=False, **kw)
        history = ft.fit(in_loader, outliers, **({"keys": keys} if where == "fit" else {}))
        assert len(history) == 1
    with pytest.raises(TypeError, match="keys must be a pair"):
        OutlierExposureFinetuner(Renamed(), keys="ids")


def test_outlier_pairs_yield_dict_batches() -> None:
    in_loader, out_loader = _loaders()
    pairs = OutlierPairs(in_loader, out_loader, ratio=2, pad_values={"input_ids": PAD})
    x_in, y, x_out = next(iter(pairs))
    assert isinstance(x_in, dict) and isinstance(x_out, dict) and y.shape == (8,)
    assert x_out["input_ids"].shape == (16, 9) and "labels" not in x_in
