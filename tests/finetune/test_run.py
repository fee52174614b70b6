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
from rejectnet.finetune import Callback, CheckpointError, FitView, StopTraining, TrainOptions
from rejectnet.finetune.checkpoint import CURRENT, read_checkpoint
from rejectnet.finetune.plan import RunSpec, plan_run
from rejectnet.finetune.run import Run
from rejectnet.losses import SelfSupervisedRejectLoss
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


# ---------------------------------------------------------------- the run object itself
def _spec(net: RejectHead, folder: Path | None, **options: object) -> RunSpec:
    opts = TrainOptions(epochs=2, lr=0.05, seed=3, progress=False, checkpoint_dir=folder)
    return RunSpec("rejectnet", net, SelfSupervisedRejectLoss(3), opts.replace(**options), None)


def _run(spec: RunSpec, *, resume: bool = False) -> Run:
    run = Run(spec, plan_run(spec, *loaders(), resume=resume))
    run.check_resume()
    run.resume()
    return run


def test_a_run_stopped_after_one_epoch_and_resumed_equals_an_uninterrupted_run(
    tmp_path: Path,
) -> None:
    """Run.epoch() once (it saves), a new Run on other weights resumes: bit for bit."""
    full_net = _net()
    full = _run(_spec(full_net, None))
    full.fit()
    first = _run(_spec(_net(), tmp_path))
    first.epoch()
    assert first.state.epoch == 1 and read_checkpoint(tmp_path / CURRENT)["epoch"] == 1
    resumed_net = _net(seed=99)  # other initial weights: all must come from the file
    resumed = _run(_spec(resumed_net, tmp_path), resume=True)
    assert (resumed.state.epoch, resumed.state.step) == (1, first.state.step)
    resumed.fit()
    assert _same(_weights(resumed_net), _weights(full_net))
    assert resumed.state.step == full.state.step
    a, b = resumed.history.epochs, full.history.epochs
    assert [(e.loss, e.in_accuracy) for e in a] == [(e.loss, e.in_accuracy) for e in b]


def test_save_writes_the_state_and_is_a_no_op_without_a_folder(tmp_path: Path) -> None:
    run = _run(_spec(_net(), None))
    run.save()  # no checkpoint_dir: nothing to write, nothing raised
    run = _run(_spec(_net(), tmp_path))
    run.save()
    state = read_checkpoint(tmp_path / CURRENT)
    assert (state["epoch"], state["step"], state["world_size"]) == (0, 0, 1)
    assert state["fingerprint"] == run.plan.identity["fingerprint"]
    assert _same(state["model"], _weights(run.model))


def test_check_resume_refuses_another_run_touching_nothing(tmp_path: Path) -> None:
    _run(_spec(_net(), tmp_path)).epoch()
    net = _net(seed=5)
    before, rng = _weights(net), torch.random.get_rng_state()
    spec = RunSpec(
        "rejectnet", net, SelfSupervisedRejectLoss(3, lam=1.0), _spec(net, tmp_path).options, None
    )
    run = Run(spec, plan_run(spec, *loaders(), resume=True))
    with pytest.raises(
        CheckpointError, match=r"objective lam: checkpoint 5\.0, this run 1\.0"
    ) as err:
        run.check_resume()
    assert err.value.field == "fingerprint"
    assert _same(_weights(net), before) and torch.equal(torch.random.get_rng_state(), rng)
    assert run.state.epoch == 0 and run.state.step == 0


def test_fit_drives_the_run_and_keeps_its_state() -> None:
    """Finetuner.fit is a driver: the finetuner's counters are the run's."""
    ft = SelfSupervisedOODFinetuner(_net(), epochs=2, progress=False, seed=3, lr=0.05)
    ft.fit(*loaders())
    run = _run(_spec(_net(), None))
    run.fit()
    assert (ft.epoch, ft.step) == (run.state.epoch, run.state.step) == (2, 12)
    assert _same(_weights(ft.model), _weights(run.model))
