"""What a fit decides before any weight changes: the plan, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from rejectnet.finetune import TrainOptions
from rejectnet.finetune.checkpoint import CURRENT, read_checkpoint, write_checkpoint
from rejectnet.finetune.plan import NOT_IN_FINGERPRINT, RunSpec, identity_of, plan_run
from rejectnet.losses import CrossEntropyLoss, OutlierExposureLoss, SelfSupervisedRejectLoss
from tests.finetune.helpers import DropoutCNN, loaders


def _spec(folder: Path | None = None, objective: object = None, **options: object) -> RunSpec:
    torch.manual_seed(0)
    net = RejectHead.wrap(DropoutCNN(), k=2)
    opts = TrainOptions(progress=False, checkpoint_dir=folder, **options)  # type: ignore[arg-type]
    return RunSpec("rejectnet", net, objective or SelfSupervisedRejectLoss(3), opts, None)


def test_the_plan_of_a_fresh_run() -> None:
    spec = _spec()
    before = {n: t.clone() for n, t in spec.model.state_dict().items()}
    plan = plan_run(spec, *loaders(), resume=False)
    assert (plan.pre.num_classes, plan.pre.reject_model, plan.pre.uses_outliers) == (3, True, True)
    assert plan.steps_per_epoch == 6 and plan.found is None and plan.outlier_loader is not None
    assert plan.identity["fingerprint"] == identity_of(spec, 3)["fingerprint"]
    after = spec.model.state_dict()
    assert all(
        torch.allclose(after[n], t, rtol=0, atol=0, equal_nan=True) for n, t in before.items()
    )


def test_an_objective_without_outliers_reads_no_outlier_loader() -> None:
    in_loader, out_loader = loaders()
    plan = plan_run(_spec(objective=CrossEntropyLoss()), in_loader, None, resume=False)
    assert plan.outlier_loader is None and not plan.pre.uses_outliers
    oe = plan_run(_spec(objective=OutlierExposureLoss()), in_loader, out_loader, resume=False)
    assert oe.pre.uses_outliers


def test_resume_needs_a_folder_and_the_same_number_of_processes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        plan_run(_spec(), *loaders(), resume=True)
    assert plan_run(_spec(tmp_path), *loaders(), resume=True).found is None
    spec = _spec(tmp_path, epochs=1)
    SelfSupervisedOODFinetuner(spec.model, options=spec.options).fit(*loaders())
    state = read_checkpoint(tmp_path / CURRENT)
    write_checkpoint(tmp_path, {**state, "world_size": 2})
    with pytest.raises(ValueError, match=r"written by a run of 2 process\(es\) but this run has 1"):
        plan_run(_spec(tmp_path, epochs=1), *loaders(), resume=True)


def test_the_fingerprint_leaves_out_what_does_not_change_the_training() -> None:
    base = identity_of(_spec(), 3)["fingerprint"]
    assert identity_of(_spec(checkpoint_every=5, channels_last=True), 3)["fingerprint"] == base
    assert identity_of(_spec(seed=1), 3)["fingerprint"] != base
    assert {"device", "checkpoint_dir", "progress", "callbacks"} <= NOT_IN_FINGERPRINT
