"""Moving batches to the device: channels_last and bf16 autocast."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from rejectnet import (
    RejectHead,
    SelfSupervisedOODFinetuner,
)
from tests.finetune.helpers import DropoutCNN, loaders


def _net() -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(DropoutCNN(), k=2)


# ---------------------------------------------------------------- channels_last
def test_channels_last_converts_model_and_inputs() -> None:
    net = _net()
    reference = SelfSupervisedOODFinetuner(copy.deepcopy(net), epochs=1, progress=False)
    ref_loss = reference.fit(*loaders())[0].loss
    seen: list[bool] = []
    net.model.register_forward_pre_hook(
        lambda m, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last))
    )
    hist = SelfSupervisedOODFinetuner(net, epochs=1, progress=False, channels_last=True).fit(
        *loaders()
    )
    assert net.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert all(seen[1:]) and len(seen) == 7  # the validation probe, then 6 steps
    # the same training in another memory format: the same loss up to float reassociation
    assert hist[0].loss == pytest.approx(ref_loss, rel=1e-4)


def _weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in m.state_dict().items()}


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality that treats NaN (the unset threshold) as equal to NaN."""
    if a.is_floating_point():
        return a.shape == b.shape and torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True)
    return torch.equal(a, b)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(_equal(a[n], b[n]) for n in a)


def test_bf16_autocast_on_cpu() -> None:
    net = _net()
    before = _weights(net)
    fp32 = SelfSupervisedOODFinetuner(copy.deepcopy(net), epochs=1, progress=False)
    ref_loss = fp32.fit(*loaders())[0].loss
    hist = SelfSupervisedOODFinetuner(net, epochs=1, progress=False, amp=True).fit(*loaders())
    # bfloat16 keeps ~3 significant digits: the same run, the same loss to a few percent
    assert hist[0].loss == pytest.approx(ref_loss, rel=0.05)
    assert not _same(before, _weights(net))
    with pytest.raises(ValueError, match="CUDA"):
        SelfSupervisedOODFinetuner(_net(), epochs=1, progress=False, amp="fp16").fit(*loaders())
