"""The paper's CIFAR backbone, WRN-40-2."""

from __future__ import annotations

import pytest
import torch

from rejectnet import RejectHead
from rejectnet.models import WideResNet


def test_wrn_40_2_shape_size_and_wrapping() -> None:
    torch.manual_seed(0)
    model = WideResNet(depth=40, widen_factor=2, num_classes=10, dropout=0.3).eval()
    # the standard WRN-40-2 for CIFAR-10 has 2.24M parameters
    assert sum(p.numel() for p in model.parameters()) == 2_243_546
    assert len(model.block1) == len(model.block2) == len(model.block3) == 6
    x = torch.randn(3, 3, 32, 32)
    net = RejectHead.wrap(model, k=5).eval()
    assert net.head_path == "fc" and net(x).shape == (3, 15)
    assert torch.equal(net(x)[:, :10], model(x))


def test_wrn_arguments() -> None:
    with pytest.raises(ValueError, match="6n \\+ 4"):
        WideResNet(depth=41)
    with pytest.raises(ValueError, match="widen_factor"):
        WideResNet(depth=16, widen_factor=0)
