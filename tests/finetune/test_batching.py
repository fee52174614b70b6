"""Loaders that cannot be read every epoch are refused up front."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import torch
from torch import nn

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from tests.finetune.helpers import DropoutCNN, loaders


def _weights(m: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and batch-norm buffers (not the unset, NaN threshold)."""
    return {k: v.detach().clone() for k, v in m.state_dict().items() if k != "threshold"}


def _same(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def _net(k: int = 3) -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(DropoutCNN(), k=k)


def test_one_shot_and_bare_tensor_outlier_loaders_are_refused_up_front() -> None:
    net = _net()
    before = _weights(net)
    in_loader, _ = loaders()
    ft = SelfSupervisedOODFinetuner(net, epochs=1, progress=False)
    gen = (torch.randn(40, 1, 8, 8) for _ in range(3))
    with pytest.raises(TypeError, match="outlier_loader is a one-shot iterator"):
        ft.fit(in_loader, gen)
    assert next(gen).shape == (40, 1, 8, 8)  # nothing was consumed by the check
    with pytest.raises(TypeError, match=r"outlier_loader is a single tensor.*\[x\]"):
        ft.fit(in_loader, torch.rand(40, 1, 8, 8))
    with pytest.raises(ValueError, match="outlier_loader is required"):
        ft.fit(in_loader, None)
    assert _same(before, _weights(net))
