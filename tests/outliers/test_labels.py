"""Clustering pseudo-labels: balanced Sinkhorn assignment to the reject units."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rejectnet.losses import SelfSupervisedRejectLoss
from rejectnet.outliers import ClusterLabeler, sinkhorn_assign


def test_sinkhorn_spreads_a_batch_that_argmax_would_collapse() -> None:
    torch.manual_seed(0)
    scores = torch.randn(300, 5) * 0.3
    scores[:, 0] += 3.0  # every row prefers cluster 0
    assert int((scores.argmax(1) == 0).sum()) == 300
    counts = torch.bincount(sinkhorn_assign(scores), minlength=5)
    assert int(counts.min()) >= 30  # every cluster gets a real share (balanced: 60)


def test_sinkhorn_keeps_clear_clusters() -> None:
    torch.manual_seed(0)
    truth = torch.arange(100) % 4
    scores = torch.nn.functional.one_hot(truth, 4).float() * 5 + 0.1 * torch.randn(100, 4)
    assert torch.equal(sinkhorn_assign(scores), truth)


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 40), k=st.integers(1, 6), c=st.integers(1, 4), seed=st.integers(0, 999))
def test_labeler_targets_in_range_deterministic_inputs_unchanged(
    m: int, k: int, c: int, seed: int
) -> None:
    logits = torch.randn(m, c + k, generator=torch.Generator().manual_seed(seed))
    before = logits.clone()
    t = ClusterLabeler()(logits, c)
    assert t.shape == (m,) and t.dtype == torch.long
    assert bool(((t >= c) & (t < c + k)).all())
    assert torch.equal(t, ClusterLabeler()(logits, c)) and torch.equal(logits, before)


def test_inside_the_loss() -> None:
    torch.manual_seed(0)
    logits = torch.randn(40, 7, requires_grad=True)
    y = torch.randint(0, 4, (8,))
    loss_fn = SelfSupervisedRejectLoss(4, 5.0, pseudo_labels=ClusterLabeler())
    loss = loss_fn(logits[:8], y, logits[8:])
    expected = torch.nn.functional.cross_entropy(logits[:8], y) + 5.0 * (
        torch.nn.functional.cross_entropy(logits[8:], ClusterLabeler()(logits[8:].detach(), 4))
    )
    assert torch.allclose(loss, expected)
    loss.backward()
    assert logits.grad is not None


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="temperature"):
        ClusterLabeler(temperature=0.0)
    with pytest.raises(ValueError, match="iters"):
        ClusterLabeler(iters=0)
    with pytest.raises(ValueError, match="no reject units"):
        ClusterLabeler()(torch.zeros(3, 4), 4)
    with pytest.raises(ValueError, match="2-D"):
        sinkhorn_assign(torch.zeros(3))
