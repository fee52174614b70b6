"""Saving a run's state and restoring it only after it was checked to fit."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from rejectnet.finetune import CheckpointError
from rejectnet.finetune import run_state as run_state_module
from rejectnet.finetune.history import History
from rejectnet.finetune.optim import OptimizerStep
from rejectnet.finetune.resume import RunState, capture, check_restorable, restore
from rejectnet.finetune.streams import EpochStream

PATH = Path("checkpoint.pt")


def _parts(seed: int, width: int = 3) -> tuple[nn.Module, OptimizerStep, RunState]:
    torch.manual_seed(seed)
    model = nn.Linear(4, width)
    opt = OptimizerStep(model, torch.optim.SGD(model.parameters(), lr=0.1), None)
    return model, opt, RunState("run", 2, history=History())


def _saved() -> dict[str, object]:
    model, opt, run = _parts(0)
    opt.backward(model(torch.randn(2, 4)).sum())
    opt.step()
    run.epoch, run.step = 1, 1
    stream = EpochStream([torch.zeros(1)])
    stream.start()
    shared, own = capture(
        run, model=model, opt=opt, in_stream=stream, out_stream=None, acc=None, signal=None
    )
    return {**shared, **own, "world_size": 1}


def test_capture_then_restore_gives_the_run_back() -> None:
    state = _saved()
    model, opt, run = _parts(1)
    restore(state, PATH, rank=0, run=run, model=model, opt=opt, out_stream=None, signal=None,
            device=torch.device("cpu"))  # fmt: skip
    assert (run.epoch, run.step, run.skip) == (1, 1, 0)
    for name, t in model.state_dict().items():
        assert torch.equal(t, state["model"][name])  # type: ignore[index]


def test_a_checkpoint_that_does_not_fit_is_refused_touching_nothing() -> None:
    state = _saved()
    model, opt, run = _parts(1, width=5)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not fit this run") as err:
        restore(state, PATH, rank=0, run=run, model=model, opt=opt, out_stream=None,
                signal=None, device=torch.device("cpu"))  # fmt: skip
    assert err.value.field == "model"
    assert all(torch.equal(t, before[n]) for n, t in model.state_dict().items())
    assert (run.epoch, run.step) == (0, 0)
    other = RunState("another", 2, history=History())
    with pytest.raises(CheckpointError, match="from a different run"):
        check_restorable(state, PATH, rank=0, run=other, model=_parts(0)[0], opt=opt, signal=None)


def test_the_old_run_state_module_still_imports() -> None:
    assert run_state_module.RunState is RunState and run_state_module.restore is restore
