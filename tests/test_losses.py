"""rejectnet.losses in a user's own loop: autocast, accumulation, inputs, errors, the rule."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from rejectnet.losses import (
    CrossEntropyLoss,
    OutlierExposureLoss,
    SelfSupervisedRejectLoss,
    pseudo_labels,
)

C, K, D = 4, 3, 10


def _reject_argmax(logits_out: torch.Tensor, num_classes: int) -> torch.Tensor:
    """A deterministic labeler: the most active reject unit (no randomness)."""
    return num_classes + logits_out[:, num_classes:].argmax(dim=-1)


def _batch(seed: int = 0, n: int = 8, m: int = 24) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(D, C + K)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(C + K, D, generator=g))
        layer.bias.copy_(torch.randn(C + K, generator=g))
    x = torch.randn(n + m, D, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    return layer, x, y


def _losses() -> dict[str, nn.Module]:
    return {
        "self_supervised": SelfSupervisedRejectLoss(C, lam=5.0, pseudo_labels=_reject_argmax),
        "self_supervised_random": SelfSupervisedRejectLoss(C, lam=5.0),
        "outlier_exposure": OutlierExposureLoss(lam=0.5),
        "cross_entropy": CrossEntropyLoss(),
    }


@pytest.mark.parametrize("name", list(_losses()))
def test_bf16_autocast_logits_give_a_float32_loss_close_to_float32(name: str) -> None:
    loss_fn = _losses()[name]
    layer, x, y = _batch()
    n = y.shape[0]
    torch.manual_seed(3)
    full = loss_fn(layer(x)[:n], y, layer(x)[n:])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = layer(x)
        assert logits.dtype == torch.bfloat16
        torch.manual_seed(3)
        low = loss_fn(logits[:n], y, logits[n:])
    assert full.dtype == low.dtype == torch.float32
    assert torch.allclose(low, full, rtol=0.03), (float(low), float(full))
    # the loss itself is computed in float32: bf16 logits give what their float32 copy gives
    torch.manual_seed(3)
    upcast = loss_fn(logits[:n].float(), y, logits[n:].float())
    assert torch.equal(low, upcast)
    low.backward()
    assert layer.weight.grad is not None and torch.isfinite(layer.weight.grad).all()


@pytest.mark.parametrize("name", list(_losses()))
def test_inputs_are_never_modified(name: str) -> None:
    loss_fn = _losses()[name]
    g = torch.Generator().manual_seed(1)
    logits_in = torch.randn(6, C + K, generator=g).requires_grad_()
    logits_out = torch.randn(18, C + K, generator=g).requires_grad_()
    targets = torch.randint(0, C, (6,), generator=g)
    before = [t.detach().clone() for t in (logits_in, logits_out, targets)]
    terms = loss_fn.terms(logits_in, targets, logits_out)
    terms.loss.backward()
    for tensor, copy in zip((logits_in, logits_out, targets), before, strict=True):
        assert torch.equal(tensor.detach(), copy)
    assert logits_in.requires_grad and logits_out.requires_grad and not targets.requires_grad
    assert logits_in.grad is not None
    assert not terms.in_loss.requires_grad
    assert terms.out_loss is None or not terms.out_loss.requires_grad


@pytest.mark.parametrize("name", ["self_supervised", "outlier_exposure"])
def test_two_half_micro_batches_accumulate_to_the_full_batch_gradient(name: str) -> None:
    loss_fn = _losses()[name]
    layer, x, y = _batch(n=8, m=40)
    x_in, x_out = x[:8], x[8:]
    logits = layer(torch.cat([x_in, x_out]))
    loss_fn(logits[:8], y, logits[8:]).backward()
    assert layer.weight.grad is not None
    full = [p.grad.clone() for p in layer.parameters()]  # type: ignore[union-attr]
    layer.zero_grad()
    for part in (slice(0, 4), slice(4, 8)):
        o = slice(part.start * 5, part.stop * 5)
        logits = layer(torch.cat([x_in[part], x_out[o]]))
        (loss_fn(logits[:4], y[part], logits[4:]) / 2).backward()
    for p, want in zip(layer.parameters(), full, strict=True):
        assert p.grad is not None
        assert torch.allclose(p.grad, want, atol=1e-6), (p.grad - want).abs().max()


def test_random_rule_needs_the_same_draws_to_accumulate() -> None:
    # with Algorithm 1's random reject units the halves draw other units than the full
    # batch: the gradients differ, which is why the test above fixes the labeler
    torch.manual_seed(0)
    logits = torch.zeros(12, C + K)
    logits[:, 0] = 1.0  # argmax on a class: every outlier gets a random reject unit
    a = pseudo_labels(logits, C, torch.Generator().manual_seed(0))
    b = torch.cat([pseudo_labels(logits[:6], C, torch.Generator().manual_seed(s)) for s in (0, 1)])
    assert not torch.equal(a, b)


def test_same_generator_state_gives_the_same_loss() -> None:
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(208, C + K, generator=g)
    logits[8:, 0] += 10.0  # class argmax: the targets are random reject units
    y = torch.randint(0, C, (8,), generator=g)

    def loss(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        fn = SelfSupervisedRejectLoss(C, generator=torch.Generator().manual_seed(seed))
        return fn(logits[:8], y, logits[8:]), fn.targets_for(logits[8:])

    (l1, _), (l2, _) = loss(11), loss(11)
    assert torch.equal(l1, l2)
    gen = torch.Generator().manual_seed(11)
    fn = SelfSupervisedRejectLoss(C, generator=gen)
    state = gen.get_state()
    first = fn(logits[:8], y, logits[8:])
    gen.set_state(state)
    assert torch.equal(fn(logits[:8], y, logits[8:]), first)
    assert not torch.equal(loss(11)[1], loss(12)[1])  # another seed draws other units
    # and the global RNG when no generator is given
    torch.manual_seed(4)
    a = SelfSupervisedRejectLoss(C)(logits[:8], y, logits[8:])
    torch.manual_seed(4)
    assert torch.equal(SelfSupervisedRejectLoss(C)(logits[:8], y, logits[8:]), a)


@settings(max_examples=60, deadline=None)
@given(
    c=st.integers(1, 6),
    k=st.integers(1, 6),
    m=st.integers(1, 40),
    seed=st.integers(0, 2**31 - 1),
    integer_logits=st.booleans(),
)
def test_pseudo_label_rule(c: int, k: int, m: int, seed: int, integer_logits: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(m, c + k, generator=g) * 3
    if integer_logits:
        logits = logits.round()  # many ties
    copy = logits.clone()
    t = pseudo_labels(logits, c, torch.Generator().manual_seed(seed))
    assert torch.equal(logits, copy)
    assert t.dtype == torch.int64 and t.shape == (m,)
    assert bool(((t >= c) & (t < c + k)).all())
    argmax = logits.argmax(dim=-1)
    on_reject = argmax >= c
    assert torch.equal(t[on_reject], argmax[on_reject])  # argmax on a reject unit: that unit
    # the module uses the same rule with the same generator state
    fn = SelfSupervisedRejectLoss(c, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(fn.targets_for(logits), t)


def test_random_reject_units_cover_all_k_uniformly() -> None:
    logits = torch.zeros(6000, C + K)
    logits[:, 1] = 1.0
    t = pseudo_labels(logits, C, torch.Generator().manual_seed(0))
    counts = torch.bincount(t - C, minlength=K).float() / t.numel()
    assert torch.allclose(counts, torch.full((K,), 1 / K), atol=0.03), counts


def test_loss_value_is_algorithm_one() -> None:
    g = torch.Generator().manual_seed(2)
    li, lo = torch.randn(5, C + K, generator=g), torch.randn(15, C + K, generator=g)
    y = torch.randint(0, C, (5,), generator=g)
    fn = SelfSupervisedRejectLoss(C, lam=2.5, generator=torch.Generator().manual_seed(9))
    targets = pseudo_labels(lo, C, torch.Generator().manual_seed(9))
    want = nn.functional.cross_entropy(li, y) + 2.5 * nn.functional.cross_entropy(lo, targets)
    terms = fn.terms(li, y, lo)
    assert torch.allclose(terms.loss, want, atol=1e-6)
    # OE: cross-entropy to the uniform distribution over the outputs
    oe = OutlierExposureLoss(lam=0.5).terms(li[:, :C], y, lo[:, :C])
    uniform = -(torch.log_softmax(lo[:, :C], dim=-1)).mean()
    assert torch.allclose(oe.out_loss, uniform, atol=1e-6)  # type: ignore[arg-type]
    # no outliers (None or 0 rows): the in-distribution term alone
    for none in (None, lo[:0]):
        assert torch.allclose(fn(li, y, none), nn.functional.cross_entropy(li, y))


L2 = torch.zeros(4, C + K)
Y = torch.tensor([0, 1, 2, 3])


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((torch.zeros(C + K), Y, L2), "logits_in must be a 2-D"),
        ((L2, Y.float(), L2), "targets must be a 1-D integer tensor"),
        ((L2, Y.bool(), L2), "targets must be a 1-D integer tensor"),
        ((L2, Y[:3], L2), r"targets must be .* one entry per row of logits_in \(4\)"),
        ((L2, Y.unsqueeze(1), L2), "targets must be a 1-D"),
        ((L2, Y, torch.zeros(C + K)), "logits_out must be a 2-D"),
        ((L2, Y, torch.zeros(4, C + K + 1)), "logits_out has 8 outputs but logits_in has 7"),
        ((torch.zeros(4, C), Y, torch.zeros(4, C)), "logits_in has 4 outputs but num_classes=4"),
        ((L2.long(), Y, L2), "logits_in must be a floating-point tensor"),
        ((L2, Y, L2.long()), "logits_out must be a floating-point tensor"),
    ],
)
def test_bad_inputs_are_rejected_naming_the_argument(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SelfSupervisedRejectLoss(C)(*args)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("logits", Y, L2), "logits_in must be a 2-D .*torch.Tensor, got str"),
        ((L2, [0, 1, 2, 3], L2), "targets must be a 1-D .*torch.Tensor.*got list"),
        ((L2, Y, L2.tolist()), "logits_out must be a 2-D .*torch.Tensor or None, got list"),
    ],
)
def test_inputs_of_the_wrong_type_raise_type_error(args: tuple[Any, ...], match: str) -> None:
    """One rule (rejectnet._validation): a wrong type is a TypeError, a wrong value a
    ValueError."""
    with pytest.raises(TypeError, match=match):
        SelfSupervisedRejectLoss(C)(*args)


@pytest.mark.parametrize("loss_fn", [OutlierExposureLoss(), CrossEntropyLoss()])
def test_other_losses_check_their_inputs(loss_fn: nn.Module) -> None:
    with pytest.raises(ValueError, match="targets must be"):
        loss_fn(L2, Y.float(), L2)
    with pytest.raises(ValueError, match="logits_in must be a 2-D"):
        loss_fn(L2[0], Y, L2)
    if isinstance(loss_fn, OutlierExposureLoss):
        with pytest.raises(ValueError, match="logits_out has 6 outputs"):
            loss_fn(L2, Y, L2[:, :6])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(num_classes=0), ValueError, "num_classes must be a positive int"),
        (dict(num_classes=-2), ValueError, "num_classes must be a positive int"),
        (dict(num_classes=2.0), TypeError, "num_classes must be a positive int"),
        (dict(num_classes=True), TypeError, "num_classes must be a positive int"),
        (dict(num_classes="3"), TypeError, "num_classes must be a positive int"),
        (dict(num_classes=3, lam=-1.0), ValueError, "lam must be a finite number >= 0"),
        (dict(num_classes=3, lam=float("inf")), ValueError, "lam must be a finite"),
        (dict(num_classes=3, lam="5"), TypeError, "lam must be a number"),
        (dict(num_classes=3, generator=0), TypeError, "generator must be a torch.Generator"),
        (dict(num_classes=3, pseudo_labels="kmeans"), TypeError, "pseudo_labels must be"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        SelfSupervisedRejectLoss(**kwargs)
    if "lam" in kwargs:
        with pytest.raises(error, match=match):
            OutlierExposureLoss(lam=kwargs["lam"])
