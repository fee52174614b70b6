"""The recommended recipe."""

from __future__ import annotations

import torch

from rejectnet.losses import SelfSupervisedRejectLoss
from rejectnet.outliers import ComposedSignal, PoolRows, Rotate, Warp, recommended


def test_recommended_with_and_without_a_pool() -> None:
    with_pool, without = recommended(pool=True), recommended(pool=False)
    assert isinstance(with_pool.signal, ComposedSignal)
    assert with_pool.signal.uses_pool and not without.signal.uses_pool
    without.signal.validate(has_pool=False)
    assert [(type(s), w) for s, w in with_pool.signal.parts] == [
        (PoolRows, 0.5),
        (Rotate, 0.25),
        (Warp, 0.25),
    ]
    assert [(type(s), w) for s, w in without.signal.parts] == [(Rotate, 0.5), (Warp, 0.5)]
    assert with_pool.pseudo_labels == "random" and with_pool.signal.virtual is None
    assert recommended().signal is not recommended().signal  # fresh objects each call
    SelfSupervisedRejectLoss(3, 5.0, pseudo_labels=with_pool.pseudo_labels)  # accepted


def test_recommended_batches_half_pool_and_deterministic() -> None:
    x_in, y = torch.rand(4, 1, 8, 8), torch.arange(4) % 2
    pool = torch.rand(20, 1, 8, 8)
    g = [torch.Generator().manual_seed(0) for _ in range(2)]
    a = recommended(pool=True, generator=g[0]).signal.outlier_batch(x_in, y, pool, 20)
    b = recommended(pool=True, generator=g[1]).signal.outlier_batch(x_in, y, pool, 20)
    assert a is not None and b is not None and torch.equal(a, b)
    assert torch.equal(a[:10], pool[:10]) and a.shape == (20, 1, 8, 8)
    out = recommended(pool=False).signal.outlier_batch(x_in, y, None, 20)
    assert out is not None and out.shape == (20, 1, 8, 8)
