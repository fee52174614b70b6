"""Token-level outliers synthesised from in-distribution utterances (rejectnet.outliers.text)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rejectnet._batches import call_model, cat_inputs
from rejectnet.outliers import (
    ComposedSignal,
    MaskTokens,
    MixUtterances,
    PoolRows,
    RandomTokens,
    SpanShuffle,
    VirtualOutliers,
    fingerprint,
    mask_tokens,
    mix_utterances,
    random_tokens,
    span_shuffle,
    text_recipe,
)

PAD, CLS, SEP, MASK = 0, 101, 102, 103
SPECIAL = (PAD, CLS, SEP, MASK)
VOCAB = 5000


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _tokens(
    lengths: list[int], width: int | None = None, seed: int = 0
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Right-padded [CLS] w1 .. wm [SEP] [PAD].. rows; row i's words are distinct and lie
    in [1000 * (i + 1), 1000 * (i + 1) + 999], so every token tells which row it came from."""
    g = _gen(seed)
    width = width or max(lengths) + 2
    ids = torch.full((len(lengths), width), PAD, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for i, m in enumerate(lengths):
        words = 1000 * (i + 1) + torch.randperm(999, generator=g)[:m]
        ids[i, : m + 2] = torch.cat([torch.tensor([CLS]), words, torch.tensor([SEP])])
        mask[i, : m + 2] = 1
    types = (torch.arange(width) >= 3).long().expand(len(lengths), width).clone() * mask
    y = torch.arange(len(lengths)) % 3
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, y


def _real(x: dict[str, torch.Tensor], i: int) -> list[int]:
    ids, mask = x["input_ids"][i], x["attention_mask"][i]
    return [int(t) for t, a in zip(ids, mask, strict=True) if a and int(t) not in SPECIAL]


_TRANSFORMS: dict[str, Callable[[dict[str, torch.Tensor], torch.Tensor, Any], Any]] = {
    "span_shuffle": lambda x, y, g: span_shuffle(x, SPECIAL, spans=3, generator=g),
    "mix_utterances": lambda x, y, g: mix_utterances(x, y, SPECIAL, generator=g),
    "random_tokens": lambda x, y, g: random_tokens(x, SPECIAL, VOCAB, 0.5, generator=g),
    "mask_tokens": lambda x, y, g: mask_tokens(x, SPECIAL, MASK, 0.5, generator=g),
}


@pytest.mark.parametrize("name", list(_TRANSFORMS))
def test_layout_masks_and_special_tokens_are_kept_and_inputs_untouched(name: str) -> None:
    x, y = _tokens([6, 9, 12, 7, 15, 8])
    before = {k: v.clone() for k, v in x.items()}
    y_before = y.clone()
    out = _TRANSFORMS[name](x, y, _gen(1))
    assert list(out) == list(x)  # the same keys, in the caller's order
    for k in x:
        assert out[k].shape == x[k].shape and out[k].dtype == x[k].dtype
        assert out[k].data_ptr() != x[k].data_ptr()  # new tensors, never views
        assert torch.equal(x[k], before[k])  # the caller's tensors unchanged
    assert torch.equal(y, y_before)
    assert torch.equal(out["attention_mask"], x["attention_mask"])
    assert torch.equal(out["token_type_ids"], x["token_type_ids"])
    special = torch.isin(x["input_ids"], torch.tensor(SPECIAL)) | (x["attention_mask"] == 0)
    assert torch.equal(out["input_ids"][special], x["input_ids"][special])
    changed = out["input_ids"] != x["input_ids"]
    assert bool(changed.any(dim=1).all()), "every row changes"
    if name != "mask_tokens":  # no transform but masking writes a special id
        assert not bool(torch.isin(out["input_ids"][~special], torch.tensor(SPECIAL)).any())


@pytest.mark.parametrize("name", list(_TRANSFORMS))
def test_deterministic_under_a_generator(name: str) -> None:
    x, y = _tokens([6, 9, 12, 7, 15, 8])
    a = _TRANSFORMS[name](x, y, _gen(5))
    b = _TRANSFORMS[name](x, y, _gen(5))
    c = _TRANSFORMS[name](x, y, _gen(6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["input_ids"], c["input_ids"])


@settings(max_examples=30, deadline=None)
@given(
    lengths=st.lists(st.integers(6, 20), min_size=1, max_size=6),
    spans=st.integers(2, 3),
    seed=st.integers(0, 2**16),
)
def test_span_shuffle_permutes_the_same_words_never_in_order(
    lengths: list[int], spans: int, seed: int
) -> None:
    x, _ = _tokens(lengths, seed=seed)
    out = span_shuffle(x, SPECIAL, spans=spans, generator=_gen(seed))
    for i in range(len(lengths)):
        a, b = _real(x, i), _real(out, i)
        assert sorted(a) == sorted(b) and a != b  # same words, other order
        # contiguous spans: at most spans - 1 + 1 places where b does not follow a's order
        pos = {t: k for k, t in enumerate(a)}
        breaks = sum(pos[b[k + 1]] != pos[b[k]] + 1 for k in range(len(b) - 1))
        assert breaks <= spans - 1


def test_mix_utterances_joins_an_own_start_to_another_labels_words() -> None:
    lengths = [6, 9, 12, 7, 15, 8, 10, 11, 6]
    x, y = _tokens(lengths)
    out = mix_utterances(x, y, SPECIAL, cut=(0.3, 0.7), generator=_gen(2))
    for i, m in enumerate(lengths):
        own, new = _real(x, i), _real(out, i)
        origin = [t // 1000 - 1 for t in new]  # the row each token came from
        a = origin.index(next(o for o in origin if o != i))  # the cut
        assert new[:a] == own[:a] and 0.3 * m - 1 <= a <= 0.7 * m + 1
        partners = set(origin[a:])
        assert len(partners) == 1 and int(y[partners.pop()]) != int(y[i])


def test_random_and_masked_tokens_replace_the_stated_fraction() -> None:
    lengths = [6, 9, 12, 7, 15, 8]
    x, _ = _tokens(lengths)
    rnd = random_tokens(x, SPECIAL, VOCAB, fraction=0.5, generator=_gen(3))
    msk = mask_tokens(x, SPECIAL, MASK, fraction=0.5, generator=_gen(3))
    for i, m in enumerate(lengths):
        k = max(1, round(0.5 * m))
        assert int((msk["input_ids"][i] == MASK).sum()) == k
        changed = rnd["input_ids"][i] != x["input_ids"][i]
        assert k - 1 <= int(changed.sum()) <= k  # a draw may hit the same id, rarely
        assert bool((rnd["input_ids"][i][changed] < VOCAB).all())
    # all but the special ids can be drawn: a tiny vocabulary shows it
    tiny = random_tokens(x, (0, 1, 2), vocab_size=4, fraction=1.0, generator=_gen(0))
    real = (x["attention_mask"] == 1) & ~torch.isin(x["input_ids"], torch.tensor(SPECIAL))
    assert bool((tiny["input_ids"][real] == 3).all())


def test_rows_without_real_tokens_come_back_unchanged() -> None:
    x = {
        "input_ids": torch.tensor([[CLS, SEP, PAD, PAD], [CLS, 1500, SEP, PAD]]),
        "attention_mask": torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]]),
    }
    y = torch.tensor([0, 1])
    for name, fn in _TRANSFORMS.items():
        out = fn(x, y, _gen(0))
        assert torch.equal(out["input_ids"][0], x["input_ids"][0]), name
        if name in ("span_shuffle", "mix_utterances"):  # one word: nothing to reorder
            assert torch.equal(out["input_ids"][1], x["input_ids"][1]), name


def _sources() -> list[Any]:
    return [
        SpanShuffle(SPECIAL),
        MixUtterances(SPECIAL),
        RandomTokens(SPECIAL, VOCAB),
        MaskTokens(SPECIAL, MASK),
    ]


@pytest.mark.parametrize("source", _sources(), ids=lambda s: type(s).__name__)
def test_sources_draw_n_rows_of_the_batch(source: Any) -> None:
    x, y = _tokens([6, 9, 12, 7])
    assert not source.needs_pool
    out = source(x, y, None, 11, _gen(0))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (11, 14) for k in x}
    empty = source(x, y, None, 0, _gen(0))
    assert empty["input_ids"].shape == (0, 14)
    again = source(x, y, None, 11, _gen(0))
    assert torch.equal(out["input_ids"], again["input_ids"])


def test_fingerprint_covers_the_text_options() -> None:
    variants = [
        SpanShuffle(SPECIAL),
        SpanShuffle(SPECIAL, spans=4),
        SpanShuffle((0, 101, 102)),
        MixUtterances(SPECIAL),
        MixUtterances(SPECIAL, cut=(0.4, 0.6)),
        RandomTokens(SPECIAL, VOCAB),
        RandomTokens(SPECIAL, VOCAB + 1),
        RandomTokens(SPECIAL, VOCAB, fraction=0.3),
        MaskTokens(SPECIAL, MASK),
        MaskTokens(SPECIAL, 104),
        text_recipe(SPECIAL, VOCAB),
        text_recipe(SPECIAL, VOCAB, mask_id=MASK),
        text_recipe(SPECIAL, VOCAB, pool=True),
    ]
    texts = [json.dumps(fingerprint(v), sort_keys=True) for v in variants]
    assert len(set(texts)) == len(texts)
    # the special ids are a set: order and repeats do not change behaviour or fingerprint
    assert fingerprint(SpanShuffle([103, 0, 102, 101, 0])) == fingerprint(SpanShuffle(SPECIAL))


def test_text_recipe_without_a_pool_and_with_a_longer_pool() -> None:
    x, y = _tokens([6, 9, 12, 7, 15, 8])
    recipe = text_recipe(SPECIAL, VOCAB, mask_id=MASK, generator=_gen(0))
    assert recipe.pseudo_labels == "random" and not recipe.signal.uses_pool
    out = recipe.signal.outlier_batch(x, y, None, 20)
    assert out["input_ids"].shape == (20, 17) and list(out) == list(x)
    again = text_recipe(SPECIAL, VOCAB, mask_id=MASK, generator=_gen(0))
    assert torch.equal(again.signal.outlier_batch(x, y, None, 20)["input_ids"], out["input_ids"])
    # a pool of longer sentences: the synthesised rows are padded with the model's pad id
    pool, _ = _tokens([25, 22, 30, 24], seed=9)
    signal = text_recipe(SPECIAL, VOCAB, pool=True, generator=_gen(0)).signal

    class Config:
        pad_token_id = 7

    model = nn.Linear(2, 2)
    model.config = Config()  # type: ignore[assignment]
    signal.attach(model)
    out = signal.outlier_batch(x, y, pool, 8)
    assert out["input_ids"].shape == (8, 32)
    assert torch.equal(out["input_ids"][:4], pool["input_ids"])  # pool rows first, as they are
    synth = out["input_ids"][4:]
    assert bool((synth[:, 17:] == 7).all()) and bool((out["attention_mask"][4:, 17:] == 0).all())
    signal.detach()
    assert torch.equal(pool["input_ids"], _tokens([25, 22, 30, 24], seed=9)[0]["input_ids"])


def test_bad_arguments_name_what_is_valid() -> None:
    x, y = _tokens([6, 9])
    with pytest.raises(TypeError, match="special_ids must be a sequence of token ids"):
        SpanShuffle("101")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"special_ids\[0\] must be an int >= 0"):
        SpanShuffle((-1,))
    with pytest.raises(ValueError, match=r"spans must be an int in \[2, 64\]"):
        SpanShuffle(SPECIAL, spans=1)
    with pytest.raises(ValueError, match=r"spans must be an int in \[2, 64\]"):
        span_shuffle(x, SPECIAL, spans=10**6)
    with pytest.raises(TypeError, match="cut must be a range"):
        MixUtterances(SPECIAL, cut=0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="leaves no id to draw"):
        RandomTokens((0, 1), vocab_size=2)
    with pytest.raises(TypeError, match="vocab_size must be an int"):
        RandomTokens(SPECIAL, vocab_size=5000.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"fraction must be a fraction in \(0, 1\]"):
        MaskTokens(SPECIAL, MASK, fraction=0.0)
    with pytest.raises(TypeError, match=r"dict of named tensors with 'input_ids'"):
        span_shuffle(x["input_ids"], SPECIAL)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="integer tensor"):
        span_shuffle({"input_ids": x["input_ids"].float()}, SPECIAL)
    with pytest.raises(ValueError, match="attention_mask"):
        span_shuffle({**x, "attention_mask": x["attention_mask"][:, :3]}, SPECIAL)
    with pytest.raises(ValueError, match="one label per utterance"):
        mix_utterances(x, torch.zeros(5, dtype=torch.long), SPECIAL)
    with pytest.raises(ValueError, match="token ids. give text sources a dict"):
        ComposedSignal([(SpanShuffle(SPECIAL), 1.0)]).outlier_batch(x["input_ids"], y, None, 2)
    with pytest.raises(ValueError, match="names"):
        ComposedSignal().outlier_batch(x, y, {"input_ids": x["input_ids"]}, 2)
    with pytest.raises(TypeError, match="Blend mixes images"):
        from rejectnet.outliers import Blend

        ComposedSignal([(Blend(), 1.0)]).outlier_batch(x, y, x, 2)


class _TinyTextModel(nn.Module):
    """Embedding, masked mean pooling, ReLU, linear head: called with named tensors."""

    def __init__(self, vocab: int = 2000, dim: int = 8, classes: int = 3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.act = nn.ReLU()
        self.classifier = nn.Linear(dim, classes)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        w = attention_mask.float()[..., None]
        pooled = (self.embed(input_ids) * w).sum(1) / w.sum(1).clamp_min(1)
        return self.classifier(self.act(pooled))


def test_virtual_outliers_and_text_sources_in_one_step_of_a_dict_input_model() -> None:
    torch.manual_seed(0)
    model = _TinyTextModel()
    signal = text_recipe(SPECIAL, 2000, mask_id=MASK, generator=_gen(0)).signal
    signal = ComposedSignal(signal.parts, VirtualOutliers(ratio=0.5, queue_size=16))
    signal.attach(model)
    x, y = _tokens([6, 9, 12, 7, 15, 8, 10, 11])
    x["input_ids"] = torch.where(x["input_ids"] > 1000, x["input_ids"] % 1000 + 200, x["input_ids"])
    x.pop("token_type_ids")
    extras = []
    for _ in range(3):  # the loop of signal.py's docstring, as the fine-tuners run it
        x_out = signal.outlier_batch(x, y, None, 16)
        batch = cat_inputs([x, x_out], pad_values=signal._pad_values)
        logits = call_model(model, batch)
        assert logits.shape == (24, 3)
        extra = signal.extra_outlier_logits(8, y)
        extras.append(extra)
        loss = logits.logsumexp(1).mean() + (0 if extra is None else extra.logsumexp(1).mean())
        loss.backward()
    signal.detach()
    assert extras[0] is None and extras[-1] is not None and extras[-1].shape == (4, 3)
    assert signal.virtual is not None and signal.virtual.seen == 24


def test_virtual_outliers_hook_a_hugging_face_classifier() -> None:
    transformers = pytest.importorskip("transformers")
    cfg = transformers.BertConfig(
        vocab_size=300,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=3,
        pad_token_id=0,
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(cfg).train()
    recipe = text_recipe(SPECIAL, 300, mask_id=MASK, generator=_gen(0))
    signal = ComposedSignal(recipe.signal.parts, VirtualOutliers(ratio=1.0, queue_size=8))
    signal.attach(model)
    x, y = _tokens([6, 9, 5, 7], width=14)
    x["input_ids"] = torch.where(x["input_ids"] > 1000, x["input_ids"] % 190 + 104, x["input_ids"])
    for _ in range(3):
        x_out = signal.outlier_batch(x, y, None, 4)
        out = call_model(model, cat_inputs([x, x_out], pad_values=signal._pad_values))
        extra = signal.extra_outlier_logits(4, y)
    signal.detach()
    assert out.logits.shape == (8, 3)
    assert extra is not None and extra.shape == (4, 3) and extra.requires_grad
    assert signal._pad_values is not None and signal._pad_values["input_ids"] == 0


def test_pool_rows_work_on_token_batches() -> None:
    x, y = _tokens([6, 9])
    pool, _ = _tokens([3, 4, 5], seed=2)
    out = ComposedSignal([(PoolRows(), 1.0)]).outlier_batch(x, y, pool, 3)
    assert torch.equal(out["input_ids"], pool["input_ids"])
    assert out["input_ids"].data_ptr() != pool["input_ids"].data_ptr()


def test_random_ids_are_uniform_over_the_vocabulary_without_the_special_ids() -> None:
    from rejectnet.outliers.text import _draw_ids

    special = (0, 5, 6, 11)
    ids = _draw_ids((60000,), 12, special, torch.device("cpu"), _gen(0))
    counts = torch.bincount(ids, minlength=12)
    allowed = [i for i in range(12) if i not in special]
    assert counts[list(special)].sum() == 0
    expected = 60000 / len(allowed)
    assert bool(((counts[allowed] - expected).abs() < 0.05 * expected).all())
