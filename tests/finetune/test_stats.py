"""Epoch statistics: sums over micro-batches, one host sync at the end."""

from __future__ import annotations

import pytest
import torch

from rejectnet.finetune.stats import EpochAccumulator
from rejectnet.finetune.step import StepOutput
from rejectnet.losses import LossTerms


def _out(loss: float, logits_in: torch.Tensor, logits_out: torch.Tensor) -> StepOutput:
    t = torch.tensor(loss)
    return StepOutput(LossTerms(t, t / 2, t / 4), logits_in, logits_out)


def test_sums_resume_and_finish() -> None:
    cpu = torch.device("cpu")
    acc = EpochAccumulator(cpu, num_classes=2, reject_model=True)
    logits_in = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    logits_out = torch.tensor([[0.0, 0.0, 3.0], [3.0, 0.0, 0.0]])
    acc.add(_out(1.0, logits_in, logits_out), torch.tensor([0, 0]))
    acc.count_step()
    resumed = EpochAccumulator(cpu, 2, True, acc.state_dict())  # a mid-epoch checkpoint
    resumed.add(_out(3.0, logits_in, logits_out), torch.tensor([0, 1]))
    resumed.count_step()
    assert resumed.running_loss() == pytest.approx(2.0)
    stats = resumed.finish(lambda t: t, epoch=1, lr=0.1, seconds=1.0, val_accuracy=None)
    assert stats.steps == 2 and stats.loss == pytest.approx(2.0)
    assert stats.in_accuracy == pytest.approx(0.75) and stats.out_on_reject == pytest.approx(0.5)
