"""Same seed, same data: identical weights on the CPU, for every trainer.

``SelfSupervisedOODFinetuner`` is covered by ``tests/finetune/test_trainers.py::
test_same_seed_same_weights``; this adds ``train_classifier`` and
``OutlierExposureFinetuner``. The global RNG is disturbed between runs: the seed alone
must decide.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from rejectnet import OutlierExposureFinetuner, train_classifier
from tests.conftest import ReliabilityCounts
from tests.finetune.helpers import DropoutCNN, loaders
from tests.reliability._helpers import same_weights, snapshot


def _stage_one(model: nn.Module, seed: int) -> Any:
    return train_classifier(model, loaders()[0], epochs=2, lr=0.05, seed=seed, progress=False)


def _outlier_exposure(model: nn.Module, seed: int) -> Any:
    return OutlierExposureFinetuner(model, epochs=2, lr=0.05, seed=seed, progress=False).fit(
        *loaders()
    )


TRAINERS: dict[str, Callable[[nn.Module, int], Any]] = {
    "train_classifier": _stage_one,
    "OutlierExposureFinetuner": _outlier_exposure,
}


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_same_seed_same_weights(trainer: str, reliability: ReliabilityCounts) -> None:
    train = TRAINERS[trainer]
    weights, losses = [], []
    for disturb in (0, 5):
        torch.manual_seed(0)
        model = DropoutCNN()
        torch.rand(disturb)  # a different global RNG state before fit
        history = train(model, 11)
        weights.append(snapshot(model))
        losses.append([(e.loss, e.in_accuracy, e.out_loss) for e in history.epochs])
        reliability.case()
    assert same_weights(weights[0], weights[1])
    assert losses[0] == losses[1]
    torch.manual_seed(0)
    other = DropoutCNN()
    train(other, 12)
    reliability.case()
    assert not same_weights(snapshot(other), weights[0]), "the seed must matter"
