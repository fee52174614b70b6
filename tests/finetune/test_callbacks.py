"""The callback hook: what a callback sees of the run."""

from __future__ import annotations

import pytest
import torch

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from rejectnet.finetune import Callback, FitView
from tests.finetune.helpers import DropoutCNN, loaders


def _net(k: int = 3) -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(DropoutCNN(), k=k)


class Record(Callback):
    def __init__(self) -> None:
        self.views: list[FitView] = []

    def on_step_end(self, view: FitView, step: int) -> None:
        self.views.append(view)


def test_fit_view_is_a_snapshot() -> None:
    rec = Record()
    ft = SelfSupervisedOODFinetuner(_net(), epochs=1, progress=False, callbacks=[rec])
    ft.fit(*loaders())
    view = rec.views[2]
    assert (view.step, view.epoch, view.epochs, view.rank, view.world_size) == (3, 0, 1, 0, 1)
    assert view.is_main and view.model is ft.model and view.lr > 0
    with pytest.raises(AttributeError):
        view.step = 99  # type: ignore[misc]
