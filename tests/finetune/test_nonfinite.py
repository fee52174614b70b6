"""The non-finite loss watch: immediate on CPU, deferred to boundaries on CUDA and under DDP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rejectnet import (
    RejectHead,
    SelfSupervisedOODFinetuner,
    train_classifier,
)
from rejectnet.finetune.checkpoint import CURRENT, read_checkpoint
from rejectnet.finetune.run import Run
from tests.finetune.helpers import DropoutCNN, in_distribution, loaders


def _net() -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(DropoutCNN(), k=2)


# ---------------------------------------------------------------- non-finite loss
def _nan_loader() -> DataLoader[Any]:
    ds = in_distribution()
    x = ds.tensors[0].clone()
    x[40] = float("nan")  # in batch 3 (samples 32..47), unshuffled
    return DataLoader(TensorDataset(x, ds.tensors[1]), batch_size=16)


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the sync-free check of CUDA and distributed runs on the CPU."""
    monkeypatch.setattr(Run, "defers_loss_check", lambda self: True)


@pytest.mark.usefixtures("deferred")
def test_deferred_nan_check_stops_at_the_next_checkpoint(tmp_path: Path) -> None:
    ft = SelfSupervisedOODFinetuner(
        _net(), epochs=1, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1
    )
    with pytest.raises(FloatingPointError, match=r"at step 3 \(epoch 1\); noticed at step 3"):
        ft.fit(_nan_loader(), loaders()[1])
    state = read_checkpoint(tmp_path / CURRENT)
    assert state["step"] == 2
    weights = {n: t for n, t in state["model"].items() if n != "threshold"}
    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())


@pytest.mark.usefixtures("deferred")
def test_deferred_nan_check_stops_at_the_epoch_end() -> None:
    with pytest.raises(FloatingPointError, match="at step 3 .*noticed at step 6"):
        train_classifier(DropoutCNN(), _nan_loader(), epochs=2, progress=False)


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path: Path) -> None:
    ds = in_distribution()
    x = ds.tensors[0].clone()
    x[40] = float("nan")  # in batch 3 (samples 32..47), unshuffled
    in_loader = DataLoader(TensorDataset(x, ds.tensors[1]), batch_size=16)
    net = _net()
    ft = SelfSupervisedOODFinetuner(
        net, epochs=1, progress=False, checkpoint_dir=tmp_path, checkpoint_every=1
    )
    with pytest.raises(FloatingPointError, match="step 3"):
        ft.fit(in_loader, loaders()[1])
    state = read_checkpoint(tmp_path / CURRENT)
    assert state["step"] == 2
    weights = {n: t for n, t in state["model"].items() if n != "threshold"}
    assert all(bool(torch.isfinite(t).all()) for t in weights.values() if t.is_floating_point())
