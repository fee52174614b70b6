"""One training step: batch assembly, the per-step label check, one forward, the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rejectnet.finetune.preflight import check_labels as preflight_check_labels
from rejectnet.finetune.step import (
    StepBatch,
    check_labels,
    forward_and_loss,
    step_batch,
    step_inputs,
)
from rejectnet.finetune.streams import OutlierStream
from rejectnet.losses import CrossEntropyLoss, OutlierExposureLoss, SelfSupervisedRejectLoss

CPU = torch.device("cpu")


def test_check_labels_names_where_and_the_range() -> None:
    check_labels(torch.tensor([0, 1, 2]), 3, "batch")
    check_labels(torch.empty(0, dtype=torch.long), 3, "empty batch")
    with pytest.raises(ValueError, match=r"in_loader batch at step 4 has labels in \[-1, 2\]"):
        check_labels(torch.tensor([-1, 2]), 3, "in_loader batch at step 4")
    assert preflight_check_labels is check_labels  # the old import path still works


def test_step_batch_draws_the_outlier_rows_and_checks_labels() -> None:
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 2, 0])
    pool = OutlierStream([torch.randn(7, 2), torch.randn(7, 2)])
    batch = step_batch((x, y), step=1, num_classes=3, device=CPU, outlier_ratio=2.5, outliers=pool)
    assert batch.num_outliers == 10 and batch.x_out is not None and batch.x_out.shape == (10, 2)
    assert batch.x_in is x and torch.equal(batch.y, y)
    with pytest.raises(ValueError, match="at step 2 has labels in"):
        step_batch((x, y + 1), step=2, num_classes=3, device=CPU)
    with pytest.raises(ValueError, match="must carry labels"):
        step_batch({"x": x}, step=1, num_classes=3, device=CPU)
    with pytest.raises(ValueError, match=r"step 3"):  # outlier rows of another shape
        step_batch(
            (x, y), step=3, num_classes=3, device=CPU, outlier_ratio=1.0,
            outliers=OutlierStream([torch.randn(8, 5)]),
        )  # fmt: skip


def test_step_inputs_join_in_then_out_without_touching_the_caller() -> None:
    x_in, x_out = torch.randn(3, 2), torch.randn(5, 2)
    keep_in, keep_out = x_in.clone(), x_out.clone()
    joined = step_inputs(StepBatch(x_in, torch.zeros(3, dtype=torch.long), x_out, 5), CPU)
    assert torch.equal(joined, torch.cat([keep_in, keep_out]))
    joined.add_(1.0)
    assert torch.equal(x_in, keep_in) and torch.equal(x_out, keep_out)
    named = StepBatch(
        {"input_ids": torch.ones(2, 3, dtype=torch.long)},
        torch.zeros(2, dtype=torch.long),
        {"input_ids": torch.ones(1, 5, dtype=torch.long)},
        1,
        {"input_ids": 0},
    )
    ids = step_inputs(named, CPU)["input_ids"]  # type: ignore[index]
    assert ids.shape == (3, 5) and int(ids[:2, 3:].abs().sum()) == 0  # right-padded


@pytest.mark.parametrize("objective", ["rejectnet", "oe"])
def test_forward_and_loss_is_one_forward_and_the_objective(objective: str) -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 5)
    calls: list[int] = []
    model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    x_in, y, x_out = torch.randn(4, 6), torch.randint(0, 3, (4,)), torch.randn(12, 6)
    loss = SelfSupervisedRejectLoss(3) if objective == "rejectnet" else OutlierExposureLoss()
    g = torch.random.get_rng_state()
    out = forward_and_loss(model, loss, StepBatch(x_in, y, x_out, 12), device=CPU, amp=False)
    assert calls == [16], "one forward over in + outliers"
    torch.random.set_rng_state(g)  # the random reject units are drawn again, the same
    logits = model(torch.cat([x_in, x_out]))
    expected = loss.terms(logits[:4], y, logits[4:])
    assert torch.equal(out.terms.loss, expected.loss)
    assert torch.equal(out.logits_in, logits[:4]) and out.logits_out is not None
    assert torch.equal(out.terms.in_loss, F.cross_entropy(logits[:4], y).detach())


def test_forward_and_loss_without_outliers_has_no_outlier_logits() -> None:
    model = nn.Linear(6, 3)
    batch = StepBatch(torch.randn(4, 6), torch.randint(0, 3, (4,)), None, 0)
    out = forward_and_loss(model, CrossEntropyLoss(), batch, device=CPU, amp=False)
    assert out.logits_out is None and out.terms.loss.ndim == 0
