"""The pseudo-label rule, the losses the presets optimise, and the objective protocol."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rejectnet.finetune.objectives import loss_terms, uses_outliers
from rejectnet.losses import (
    CrossEntropyLoss,
    OutlierExposureLoss,
    SelfSupervisedRejectLoss,
    pseudo_labels,
)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 40),
    c=st.integers(1, 6),
    k=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.1, 50.0),
)
def test_pseudo_label_rule(n: int, c: int, k: int, seed: int, scale: float) -> None:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(n, c + k, generator=g) * scale
    before = logits.clone()
    target = pseudo_labels(logits, c, torch.Generator().manual_seed(seed + 1))
    assert torch.equal(logits, before), "pseudo_labels must not modify its input"
    assert target.dtype == torch.int64 and target.shape == (n,)
    assert bool(((target >= c) & (target < c + k)).all())
    argmax = logits.argmax(1)
    on_reject = argmax >= c
    assert torch.equal(target[on_reject], argmax[on_reject])


def test_random_reject_units_are_uniform() -> None:
    c, k, n = 3, 5, 50_000
    logits = torch.zeros(n, c + k)
    logits[:, 0] = 10.0  # argmax always an in-distribution class -> random reject unit
    target = pseudo_labels(logits, c, torch.Generator().manual_seed(0))
    counts = torch.bincount(target - c, minlength=k).double()
    expected = n / k
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 20.5  # 99.96th percentile of chi-square with 4 dof


def test_pseudo_labels_follow_generator() -> None:
    logits = torch.zeros(100, 7)
    logits[:, 1] = 1.0
    a = pseudo_labels(logits, 2, torch.Generator().manual_seed(3))
    b = pseudo_labels(logits, 2, torch.Generator().manual_seed(3))
    c = pseudo_labels(logits, 2, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_self_supervised_loss_value() -> None:
    torch.manual_seed(0)
    c, k, lam = 4, 3, 5.0
    li = torch.randn(8, c + k, requires_grad=True)
    lo = torch.randn(40, c + k, requires_grad=True)
    y = torch.randint(0, c, (8,))
    loss_fn = SelfSupervisedRejectLoss(c, lam, torch.Generator().manual_seed(9))
    out = loss_terms(loss_fn, li, y, lo)
    target = pseudo_labels(lo.detach(), c, torch.Generator().manual_seed(9))
    expected = F.cross_entropy(li, y) + lam * F.cross_entropy(lo, target)
    assert torch.allclose(out.loss, expected)
    assert out.out_loss is not None
    assert torch.allclose(out.out_loss, F.cross_entropy(lo, target))
    out.loss.backward()
    assert li.grad is not None and lo.grad is not None
    # the in-distribution term covers all C+k outputs: reject logits get pushed down
    assert bool((li.grad[:, c:] > 0).all())


def test_outlier_exposure_loss_value() -> None:
    torch.manual_seed(0)
    li, lo = torch.randn(8, 5), torch.randn(40, 5)
    y = torch.randint(0, 5, (8,))
    loss = OutlierExposureLoss(0.5)(li, y, lo)
    uniform = torch.full((40, 5), 0.2)
    expected = F.cross_entropy(li, y) + 0.5 * F.cross_entropy(lo, uniform)
    assert torch.allclose(loss, expected)


def test_objective_protocol_plain_callables() -> None:
    """Any callable is an objective; without ``terms`` only the total is reported."""
    li, lo = torch.randn(4, 3), torch.randn(8, 3)
    y = torch.tensor([0, 1, 2, 0])

    def plain(logits_in: torch.Tensor, t: torch.Tensor, logits_out: torch.Tensor | None):
        return F.cross_entropy(logits_in, t)

    out = loss_terms(plain, li, y, lo)
    assert torch.allclose(out.loss, F.cross_entropy(li, y)) and out.out_loss is None
    assert uses_outliers(plain) and not uses_outliers(CrossEntropyLoss())
    with pytest.raises(TypeError, match="scalar"):
        loss_terms(lambda a, b, c: a.sum(1), li, y, lo)
