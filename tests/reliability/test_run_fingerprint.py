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

from rejectnet import SelfSupervisedOODFinetuner
from rejectnet.finetune.checkpoint import CURRENT, CheckpointError, read_checkpoint
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
