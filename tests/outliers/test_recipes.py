"""The recommended recipe."""

from __future__ import annotations

import torch

from rejectnet.losses import SelfSupervisedRejectLoss
from rejectnet.outliers import ComposedSignal, recommended


def test_recommended_with_and_without_a_pool() -> None:
    with_pool, without = recommended(pool=True), recommended(pool=False)
    assert isinstance(with_pool.signal, ComposedSignal)
    assert with_pool.signal.uses_pool and not without.signal.uses_pool
    without.signal.validate(has_pool=False)
    assert recommended().signal is not recommended().signal  # fresh state each call
    SelfSupervisedRejectLoss(3, 5.0, pseudo_labels=with_pool.pseudo_labels)  # accepted
    x_in, y = torch.rand(4, 1, 8, 8), torch.arange(4) % 2
    out = without.signal.outlier_batch(x_in, y, None, 20)
    assert out is not None and out.shape == (20, 1, 8, 8)
