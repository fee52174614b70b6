"""Resuming another run's checkpoint from the same folder is refused (the run fingerprint).

The issue: a checkpoint from another run of the same architecture (other seed, other
``lam``) resumed silently. Every checkpoint now carries a fingerprint of the run
(architecture, C, k, objective and its options, training options, seed); a resume whose
fingerprint differs is refused before anything is restored, and the message says how to
start the new run instead (a new ``checkpoint_dir``, or ``resume=False``).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from rejectnet import SelfSupervisedOODFinetuner
from rejectnet.finetune.checkpoint import (
    CURRENT,
    CheckpointError,
    read_checkpoint,
    write_checkpoint,
)
from rejectnet.outliers import (
    Blend,
    ClusterLabeler,
    ComposedSignal,
    Jigsaw,
    PoolRows,
    Rotate,
    VirtualOutliers,
)
from tests.conftest import ReliabilityCounts
from tests.reliability._crashjob import EPOCHS, build_loaders, build_net, run, single_thread
from tests.reliability._helpers import bit_equal, snapshot


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fp") / "ckpt"
    with single_thread():
        run(folder)
    if "fingerprint" not in read_checkpoint(folder / CURRENT):
        pytest.skip("the training loop does not write a run fingerprint yet")
    return folder


def _resume(folder: Path, **overrides: Any) -> Any:
    net = build_net()
    options: dict[str, Any] = {
        "epochs": EPOCHS,
        "lr": 0.05,
        "seed": 7,
        "progress": False,
        "checkpoint_dir": folder,
        "checkpoint_every": 1,
        **overrides,
    }
    before = snapshot(net)
    ft = SelfSupervisedOODFinetuner(net, **options)
    with single_thread():
        try:
            ft.fit(*build_loaders(), resume=True)
        except CheckpointError as err:
            assert bit_equal(snapshot(net), before), "refused before any weight changed"
            return err
    return None


def test_the_same_run_resumes(finished: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(finished, folder)
    assert _resume(folder) is None


@pytest.mark.parametrize(
    "change",
    [{"seed": 8}, {"lam": 1.0}, {"lr": 0.1}, {"outlier_ratio": 2.0}],
    ids=["seed", "lam", "lr", "outlier_ratio"],
)
def test_another_run_is_refused(
    change: dict[str, Any], finished: Path, tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    folder = tmp_path / "ckpt"
    shutil.copytree(finished, folder)
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    err = _resume(folder, **change)
    reliability.fault()
    assert isinstance(err, CheckpointError), "another run's checkpoint must be refused"
    assert err.field == "fingerprint" and str(folder / CURRENT) in str(err)
    assert "from another run" in str(err) and "new checkpoint_dir" in str(err)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files


# ---------------------------------------------------------------- the outlier signal's values
def _signal_run(folder: Path, *, resume: bool = False, **overrides: Any) -> Any:
    """A 2-epoch run with an outlier signal; returns the error of a refused resume."""
    net = build_net()
    options: dict[str, Any] = {
        "epochs": EPOCHS,
        "lr": 0.05,
        "seed": 7,
        "progress": False,
        "checkpoint_dir": folder,
        "checkpoint_every": 1,
        **overrides,
    }
    before, rng = snapshot(net), torch.random.get_rng_state()
    ft = SelfSupervisedOODFinetuner(net, **options)
    with single_thread():
        try:
            ft.fit(*build_loaders(), resume=resume)
        except CheckpointError as err:
            assert bit_equal(snapshot(net), before), "refused before any weight changed"
            assert torch.equal(torch.random.get_rng_state(), rng), "and before the RNG was"
            return err
    return None


def _signal(*parts: Any, virtual: Any = None) -> ComposedSignal:
    return ComposedSignal([(p, 1.0 / len(parts)) for p in parts], virtual=virtual)


@pytest.mark.parametrize(
    ("first", "second", "needle"),
    [
        (
            {"outlier_signal": _signal(Jigsaw(2))},
            {"outlier_signal": _signal(Rotate())},
            "outlier_signal.parts[0][0]: checkpoint Jigsaw(grid=2), this run "
            "Rotate(angles=[90, 270])",
        ),
        (
            {"outlier_signal": _signal(Jigsaw(2))},
            {"outlier_signal": _signal(Jigsaw(3))},
            "outlier_signal.parts[0][0].grid: checkpoint 2, this run 3",
        ),
        (
            {"outlier_signal": _signal(Blend(0.1))},
            {"outlier_signal": _signal(Blend(0.45))},
            "outlier_signal.parts[0][0].alpha: checkpoint 0.1, this run 0.45",
        ),
        (
            {"pseudo_labels": ClusterLabeler(temperature=1.0)},
            {"pseudo_labels": ClusterLabeler(temperature=20.0)},
            "objective labeler.temperature: checkpoint 1.0, this run 20.0",
        ),
        (
            {"outlier_signal": _signal(PoolRows())},
            {"outlier_signal": _signal(PoolRows(), virtual=VirtualOutliers(queue_size=32))},
            "outlier_signal.virtual: checkpoint None, this run VirtualOutliers(",
        ),
    ],
    ids=["rotate_for_jigsaw", "jigsaw_grid", "blend_alpha", "cluster_temperature", "virtual"],
)
def test_a_changed_outlier_signal_is_refused_naming_the_change(
    first: dict[str, Any],
    second: dict[str, Any],
    needle: str,
    tmp_path: Path,
    reliability: ReliabilityCounts,
) -> None:
    folder = tmp_path / "ckpt"
    assert _signal_run(folder, **first) is None
    files = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert _signal_run(folder, resume=True, **first) is None, "the same signal resumes"
    shutil.rmtree(folder)
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    state = second.get("outlier_signal")
    signal_before = snapshot(state.state_dict()) if state is not None else None
    err = _signal_run(folder, resume=True, **second)
    reliability.case()
    reliability.fault()
    assert isinstance(err, CheckpointError), "a changed outlier signal must be refused"
    assert err.field == "fingerprint" and "from another run" in str(err)
    assert needle in str(err), str(err)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == files
    if state is not None:
        assert bit_equal(snapshot(state.state_dict()), signal_before), "the signal untouched"


def test_virtual_outliers_added_without_a_fingerprint_are_refused_before_loading(
    tmp_path: Path, reliability: ReliabilityCounts
) -> None:
    """A checkpoint with no fingerprint (an older writer): the signal state is tried on a
    copy of the signal before anything is loaded, so the weights stay bit-identical."""
    folder = tmp_path / "ckpt"
    assert _signal_run(folder, outlier_signal=_signal(PoolRows())) is None
    state = read_checkpoint(folder / CURRENT)
    del state["fingerprint"], state["run_config"]
    write_checkpoint(folder, state)
    virtual = VirtualOutliers(queue_size=32)
    err = _signal_run(folder, resume=True, outlier_signal=_signal(PoolRows(), virtual=virtual))
    reliability.case()
    reliability.fault()
    assert isinstance(err, CheckpointError) and err.field == "signal", err
    assert "outlier-signal state does not fit" in str(err) and "nothing was restored" in str(err)
    assert virtual.feats is None and virtual.ptr == 0, "the live signal is untouched"
