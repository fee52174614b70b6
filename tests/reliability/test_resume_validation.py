"""A checkpoint that does not fit the run is refused before anything is restored.

:func:`rejectnet.finetune.resume.validate_resume` compares a checkpoint with the live
model, optimizer, scheduler and scaler completely and raises one ``CheckpointError``
naming the file and every difference; the live objects stay bit-identical. Each case
below is a way the issue's "resume a k=3 model from a k=2 run" can happen.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet.finetune.checkpoint import CURRENT, CheckpointError, read_checkpoint
from rejectnet.finetune.resume import run_fingerprint, run_identity, validate_resume
from tests.conftest import ReliabilityCounts
from tests.finetune.helpers import DropoutCNN
from tests.reliability._crashjob import run, single_thread
from tests.reliability._helpers import bit_equal, snapshot


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The checkpoint of a finished C=3, k=2 run (DropoutCNN, SGD with momentum, cosine)."""
    folder = tmp_path_factory.mktemp("k2run") / "ckpt"
    with single_thread():
        run(folder)
    return folder / CURRENT


def _live(k: int = 2, num_classes: int = 3, dtype: torch.dtype = torch.float32) -> Any:
    torch.manual_seed(1)
    net = RejectHead.wrap(DropoutCNN(num_classes=num_classes), k=k).to(dtype)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    return net, opt, sched


def _check(
    ckpt: dict[str, Any], path: Path, net: nn.Module, opt: Any, sched: Any, **kw: Any
) -> None:
    validate_resume(
        ckpt,
        path=path,
        model=net,
        optimizer=opt,
        scheduler=sched,
        num_classes=kw.pop("num_classes", 3),
        k=kw.pop("k", net.k if isinstance(net, RejectHead) else None),
        **kw,
    )


def test_a_fitting_checkpoint_passes(saved: Path) -> None:
    net, opt, sched = _live()
    _check(read_checkpoint(saved), saved, net, opt, sched)


def _refuse(
    saved: Path,
    ckpt: dict[str, Any],
    net: nn.Module,
    opt: Any,
    sched: Any,
    field: str,
    *needles: str,
    **kw: Any,
) -> CheckpointError:
    before = (snapshot(net), snapshot(opt.state_dict()), snapshot(ckpt))
    with pytest.raises(CheckpointError) as info:
        _check(ckpt, saved, net, opt, sched, **kw)
    msg = str(info.value)
    assert str(saved) in msg and info.value.field == field and info.value.path == saved, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    after = (snapshot(net), snapshot(opt.state_dict()), snapshot(ckpt))
    assert bit_equal(before, after), "nothing was touched, not even the checkpoint"
    return info.value


def test_k3_model_from_a_k2_run(saved: Path, reliability: ReliabilityCounts) -> None:
    net, opt, sched = _live(k=3)
    err = _refuse(saved, read_checkpoint(saved), net, opt, sched, "k", "k: checkpoint 2, model 3")
    assert "'score_weights' shape: checkpoint (2,), model (3,)" in str(err)
    reliability.fault()


def test_other_num_classes(saved: Path, reliability: ReliabilityCounts) -> None:
    net, opt, sched = _live(num_classes=4)
    ckpt = {**read_checkpoint(saved), "num_classes": 3}
    _refuse(
        saved,
        ckpt,
        net,
        opt,
        sched,
        "num_classes",
        "C (num_classes): checkpoint 3, model 4",
        num_classes=4,
    )
    reliability.fault()
    # without the field (older checkpoints), the head's shapes name the difference
    old = {n: v for n, v in read_checkpoint(saved).items() if n not in ("num_classes", "k")}
    _refuse(
        saved,
        old,
        net,
        opt,
        sched,
        "model",
        "base.weight' shape: checkpoint (3, 24), model (4, 24)",
        num_classes=4,
    )
    reliability.fault()


def test_other_dtype(saved: Path, reliability: ReliabilityCounts) -> None:
    net, opt, sched = _live(dtype=torch.float64)
    _refuse(
        saved,
        read_checkpoint(saved),
        net,
        opt,
        sched,
        "model",
        "dtype: checkpoint torch.float32, model torch.float64",
    )
    reliability.fault()


MODEL_EDITS: dict[str, tuple[Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]], str]] = {
    "missing_key": (lambda m: {k: v for k, v in m.items() if "conv1.bias" not in k}, "lacks"),
    "extra_key": (lambda m: {**m, "model.extra.weight": torch.zeros(2)}, "which the model lacks"),
    "wrong_shape": (
        lambda m: {**m, "model.conv1.weight": torch.zeros(4, 1, 5, 5)},
        "'model.conv1.weight' shape: checkpoint (4, 1, 5, 5)",
    ),
}


@pytest.mark.parametrize("case", sorted(MODEL_EDITS))
def test_model_state_differences(case: str, saved: Path, reliability: ReliabilityCounts) -> None:
    edit, needle = MODEL_EDITS[case]
    ckpt = read_checkpoint(saved)
    ckpt = {**ckpt, "model": edit(ckpt["model"])}
    net, opt, sched = _live()
    _refuse(saved, ckpt, net, opt, sched, "model", needle)
    reliability.fault()


def test_optimizer_differences(saved: Path, reliability: ReliabilityCounts) -> None:
    net, _, _ = _live()
    params = list(net.parameters())
    two = torch.optim.SGD([{"params": params[:3]}, {"params": params[3:]}], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(two, lambda step: 1.0)
    _refuse(
        saved,
        read_checkpoint(saved),
        net,
        two,
        sched,
        "optimizer",
        "param groups: checkpoint 1, optimizer 2",
    )
    reliability.fault()
    fewer = torch.optim.SGD(params[1:], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(fewer, lambda step: 1.0)
    _refuse(
        saved,
        read_checkpoint(saved),
        net,
        fewer,
        sched,
        "optimizer",
        "param group 0 size: checkpoint 10, optimizer 9",
    )
    reliability.fault()
    ckpt = read_checkpoint(saved)
    state = dict(ckpt["optimizer"]["state"])
    state[0] = {"momentum_buffer": torch.zeros(3)}
    ckpt = {**ckpt, "optimizer": {**ckpt["optimizer"], "state": state}}
    net, opt, sched = _live()
    _refuse(
        saved,
        ckpt,
        net,
        opt,
        sched,
        "optimizer",
        "state 'momentum_buffer' of parameter 0 shape: checkpoint (3,), parameter (4, 1, 3, 3)",
    )
    reliability.fault()


def test_scheduler_scaler_and_world_size(saved: Path, reliability: ReliabilityCounts) -> None:
    net, opt, _ = _live()
    _refuse(
        saved,
        read_checkpoint(saved),
        net,
        opt,
        None,
        "scheduler",
        "the checkpoint has scheduler state but this run uses none",
    )
    reliability.fault()
    net, opt, sched = _live()
    scaler = torch.amp.GradScaler("cpu")
    _refuse(
        saved,
        read_checkpoint(saved),
        net,
        opt,
        sched,
        "scaler",
        "the checkpoint has no scaler state but this run uses one",
        scaler=scaler,
    )
    reliability.fault()
    _refuse(
        saved,
        read_checkpoint(saved),
        net,
        opt,
        sched,
        "world_size",
        "processes: checkpoint 1, this run 2",
        world_size=2,
    )
    reliability.fault()


def test_fingerprint(saved: Path, reliability: ReliabilityCounts) -> None:
    net, opt, sched = _live()
    ident = run_identity(
        net, num_classes=3, k=2, objective="rejectnet", options={"lam": 5.0, "lr": 0.05}, seed=7
    )
    ckpt = {**read_checkpoint(saved), **ident}
    _check(ckpt, saved, net, opt, sched, fingerprint=ident["fingerprint"])  # same run: fine
    for change in ({"seed": 8}, {"options": {"lam": 1.0, "lr": 0.05}}, {"objective": "oe"}):
        args: dict[str, Any] = {
            "num_classes": 3,
            "k": 2,
            "objective": "rejectnet",
            "options": {"lam": 5.0, "lr": 0.05},
            "seed": 7,
            **change,
        }
        other = run_fingerprint(net, **args)
        assert other != ident["fingerprint"]
        _refuse(
            saved,
            ckpt,
            net,
            opt,
            sched,
            "fingerprint",
            "from another run",
            "new checkpoint_dir",
            fingerprint=other,
        )
        reliability.fault()
    # the fingerprint sees the architecture, not the weights
    with torch.no_grad():
        next(net.parameters()).add_(1.0)
    assert (
        run_fingerprint(
            net, num_classes=3, k=2, objective="rejectnet", options={"lam": 5.0, "lr": 0.05}, seed=7
        )
        == ident["fingerprint"]
    )


def test_all_differences_in_one_message(saved: Path) -> None:
    net, _, _ = _live(k=3, dtype=torch.float64)
    opt = torch.optim.SGD(list(net.parameters())[1:], lr=0.1)
    err = _refuse(
        saved,
        read_checkpoint(saved),
        net,
        opt,
        None,
        "k",
        "k: checkpoint 2, model 3",
        "dtype",
        "param group 0 size",
        "scheduler",
    )
    assert "nothing was restored" in str(err)


# ---------------------------------------------------------------- through fit(resume=True)
@pytest.mark.parametrize(("k", "num_classes"), [(3, 3), (2, 4)], ids=["k3_from_k2", "C4_from_C3"])
def test_resume_another_k_or_c_through_fit_leaves_the_weights_bit_identical(
    k: int,
    num_classes: int,
    saved: Path,
    tmp_path: Path,
    reliability: ReliabilityCounts,
) -> None:
    """The issue: a k=3 model resumed from a k=2 run raised torch's RuntimeError after the
    caller's weights were partly overwritten."""
    folder = tmp_path / "ckpt"
    shutil.copytree(saved.parent, folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    torch.manual_seed(3)
    net = RejectHead.wrap(DropoutCNN(num_classes=num_classes), k=k)
    before = snapshot(net)
    with single_thread(), pytest.raises(CheckpointError) as info:
        run(folder, resume=True, net=net)
    reliability.fault()
    msg = str(info.value)
    assert str(folder / CURRENT) in msg and "nothing was restored" in msg
    if k == 3:
        assert "k: checkpoint 2, model 3" in msg and info.value.field == "k"
    else:
        assert "model.fc.base.weight' shape: checkpoint (3, 24), model (4, 24)" in msg
    assert bit_equal(snapshot(net), before), "the caller's weights are bit-identical"
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files, "checkpoints kept"
