"""The collapse warning: stage two that wrecks the classifier says so, with the numbers."""

from __future__ import annotations

import copy
import re
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from rejectnet import SelfSupervisedOODFinetuner, train_classifier
from rejectnet.finetune.collapse import CollapseWarning, CollapseWatch, Measure, measure
from tests.finetune.helpers import DropoutCNN, in_distribution, loaders


@pytest.fixture(scope="module")
def trained() -> DropoutCNN:
    torch.manual_seed(0)
    model = DropoutCNN()
    train_classifier(model, loaders(batch=64)[0], epochs=12, lr=0.05, progress=False)
    return model


def _fit(model: DropoutCNN, lr: float | None, val: bool) -> list[str]:
    ft = SelfSupervisedOODFinetuner(copy.deepcopy(model), k=2, epochs=2, lr=lr, progress=False)
    val_loader = DataLoader(in_distribution(seed=5), batch_size=32) if val else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ft.fit(*loaders(batch=64), val_loader=val_loader)
    return [str(w.message) for w in caught if issubclass(w.category, CollapseWarning)]


@pytest.mark.parametrize("val", [True, False], ids=["val_loader", "training_batches"])
def test_a_too_high_learning_rate_warns_with_the_numbers(trained: DropoutCNN, val: bool) -> None:
    messages = _fit(trained, lr=3.0, val=val)
    assert len(messages) == 1, messages  # once per fit
    msg = messages[0]
    source = "val_loader" if val else "the training batches"
    assert re.search(rf"collapsed at epoch [12] \({source}\): accuracy fell from", msg), msg
    assert "% before training to " in msg and "sgd at lr=3" in msg and "lower lr" in msg


@pytest.mark.parametrize("val", [True, False], ids=["val_loader", "training_batches"])
def test_the_default_learning_rate_does_not_warn(trained: DropoutCNN, val: bool) -> None:
    assert _fit(trained, lr=None, val=val) == []


def test_the_rule() -> None:
    watch = CollapseWatch("run", "hint")
    assert watch.collapsed(Measure(0.1, 9.0, "val_loader")) == []  # no baseline yet
    watch.start(Measure(0.9, 0.3, "val_loader"))
    watch.start(Measure(0.1, 5.0, "val_loader"))  # the first start wins
    assert watch.collapsed(Measure(0.75, 0.5, "val_loader")) == []  # a dip is not a collapse
    assert watch.collapsed(Measure(0.3, 0.5, "val_loader")) == [
        "accuracy fell from 90.0% before training to 30.0%"
    ]
    assert watch.collapsed(Measure(0.9, 1.2, "val_loader")) == [
        "cross-entropy rose from 0.300 to 1.200"
    ]
    assert watch.collapsed(Measure(0.9, 1.2, "training", loss_counts=False)) == []
    chance = CollapseWatch("run", "hint", num_classes=3)
    chance.start(Measure(0.5, 1.4, "training", False))  # under 1/3 + 0.2: nothing to lose
    assert chance.collapsed(Measure(0.05, 1.4, "training", False)) == []
    noisy = CollapseWatch("run", "hint", num_classes=3)
    noisy.start(Measure(0.625, 1.0, "training", False, rows=16))  # 62.5% of 16 rows: noise
    assert noisy.collapsed(Measure(0.2, 1.0, "training", False)) == []
    sure = CollapseWatch("run", "hint", num_classes=3)
    sure.start(Measure(0.9, 1.0, "training", False, rows=64))
    assert sure.collapsed(Measure(0.3, 1.0, "training", False)) != []


def test_measure_is_eval_mode_over_the_c_classes_and_leaves_the_rng() -> None:
    net = nn.Sequential(nn.Linear(2, 4), nn.Dropout(0.5))
    net.train()
    x = torch.randn(10, 2)
    y = net[0](x)[:, :3].argmax(1).detach()  # right over the first 3 outputs
    rng = torch.random.get_rng_state()
    m = measure(net, [(x, y)], num_classes=3)
    assert (m.accuracy, m.rows, m.source) == (1.0, 10, "val_loader") and net.training
    assert torch.equal(torch.random.get_rng_state(), rng)
    with pytest.raises(ValueError, match="must carry labels"):
        measure(net, [{"x": x}])
