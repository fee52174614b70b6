"""The pseudo-label rule and the three losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rejectnet.finetune.objectives import (
    OutlierExposureObjective,
    SelfSupervisedObjective,
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
    out = SelfSupervisedObjective(c, lam, torch.Generator().manual_seed(9))(li, y, lo)
    target = pseudo_labels(lo.detach(), c, torch.Generator().manual_seed(9))
    expected = F.cross_entropy(li, y) + lam * F.cross_entropy(lo, target)
    assert torch.allclose(out.loss, expected)
    assert int(out.in_correct) == int((li[:, :c].argmax(1) == y).sum())
    assert int(out.out_on_reject) == int((lo.argmax(1) >= c).sum())
    out.loss.backward()
    assert li.grad is not None and lo.grad is not None
    # the in-distribution term covers all C+k outputs: reject logits get pushed down
    assert bool((li.grad[:, c:] > 0).all())


def test_outlier_exposure_loss_value() -> None:
    torch.manual_seed(0)
    li, lo = torch.randn(8, 5), torch.randn(40, 5)
    y = torch.randint(0, 5, (8,))
    out = OutlierExposureObjective(5, 0.5)(li, y, lo)
    uniform = torch.full((40, 5), 0.2)
    expected = F.cross_entropy(li, y) + 0.5 * F.cross_entropy(lo, uniform)
    assert torch.allclose(out.loss, expected)
    assert out.out_on_reject is None
