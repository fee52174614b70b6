"""The run object: resume equals an uninterrupted run, epoch/save/resume, the driver's order."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rejectnet import (
    RejectHead,
    SelfSupervisedOODFinetuner,
)
from rejectnet.finetune import Callback, FitView, StopTraining
from rejectnet.finetune.checkpoint import CURRENT, read_checkpoint
from tests.finetune.helpers import DropoutCNN, loaders


def _net(seed: int = 0, k: int = 2) -> RejectHead:
    torch.manual_seed(seed)
    return RejectHead.wrap(DropoutCNN(), k=k)


def _weights(m: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in m.state_dict().items()}


def _equal(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bit-for-bit equality that treats NaN (the unset threshold) as equal to NaN."""
    if a.is_floating_point():
        return a.shape == b.shape and torch.allclose(a, b, rtol=0.0, atol=0.0, equal_nan=True)
    return torch.equal(a, b)


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(_equal(a[n], b[n]) for n in a)


class Recorder(Callback):
    def __init__(self) -> None:
        self.steps: list[int] = []

    def on_step_end(self, view: FitView, step: int) -> None:
        self.steps.append(step)


class StopAt(Callback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, view: FitView, step: int) -> None:
        if step == self.step:
            raise StopTraining


@pytest.mark.parametrize("stop_step", [4, 6, 9])
def test_resume_equals_uninterrupted(tmp_path: Path, stop_step: int) -> None:
    full = _net()
    SelfSupervisedOODFinetuner(full, epochs=2, progress=False, seed=3).fit(*loaders())

    net = _net()
    ckpt = tmp_path / "ckpt"
    kwargs = dict(epochs=2, progress=False, seed=3, checkpoint_dir=ckpt, checkpoint_every=2)
    ft = SelfSupervisedOODFinetuner(net, callbacks=[StopAt(stop_step)], **kwargs)  # type: ignore[arg-type]
    partial = ft.fit(*loaders())
    assert ft.step == stop_step and len(partial) == (stop_step - 1) // 6
    assert not _same(_weights(net), _weights(full))

    resumed = _net(seed=99)  # different initial weights: everything must come from the file
    rec = Recorder()
    hist = SelfSupervisedOODFinetuner(resumed, callbacks=[rec], **kwargs).fit(  # type: ignore[arg-type]
        *loaders(), resume=True
    )
    assert rec.steps == list(range(stop_step + 1, 13))
    assert _same(_weights(resumed), _weights(full))
    assert len(hist) == 2


def test_resume_without_checkpoint_starts_fresh(tmp_path: Path) -> None:
    net = _net()
    hist = SelfSupervisedOODFinetuner(net, epochs=1, progress=False, checkpoint_dir=tmp_path).fit(
        *loaders(), resume=True
    )
    assert len(hist) == 1 and (tmp_path / CURRENT).exists()
    state = read_checkpoint(tmp_path / CURRENT)
    assert state["epoch"] == 1 and state["step"] == 6


def test_resume_needs_checkpoint_dir() -> None:
    with pytest.raises(ValueError, match="checkpoint_dir"):
        SelfSupervisedOODFinetuner(_net(), epochs=1, progress=False).fit(*loaders(), resume=True)
