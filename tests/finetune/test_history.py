"""What fit returns: per-epoch statistics, indexable and column-wise."""

from __future__ import annotations

import torch
from torch import nn

from rejectnet import train_classifier
from rejectnet.finetune.history import EpochStats, History


def test_history_indexes_and_columns() -> None:
    assert History().to_dict()["loss"] == [] and len(History()) == 0
    x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
    history = train_classifier(nn.Linear(4, 2), [(x, y)], epochs=2, progress=False)
    assert len(history) == 2 and isinstance(history[0], EpochStats)
    columns = history.to_dict()
    assert columns["epoch"] == [1, 2] and columns["steps"] == [1, 1]
    assert columns["out_loss"] == [None, None]  # no outliers in stage one
