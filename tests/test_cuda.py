"""The CUDA training path: sync-free steps, pinned copies, bf16 with channels_last.

Skipped without a GPU; run on a CUDA machine with ``pytest tests/test_cuda.py``.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rejectnet import RejectHead, SelfSupervisedOODFinetuner, train_classifier
from rejectnet.finetune import Callback, FitView
from tests.finetune.helpers import DropoutCNN, in_distribution, outliers

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def _net() -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(DropoutCNN(), k=2).cuda()


def _batches(n: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[torch.Tensor]]:
    x, y = in_distribution(16 * n).tensors
    out = outliers(80 * n).tensors[0]
    return [(x[i * 16 : (i + 1) * 16], y[i * 16 : (i + 1) * 16]) for i in range(n)], [out]


class _SyncDebugBetween(Callback):
    """Flag host synchronisations from the end of step 1 to the end of the last step."""

    def __init__(self, last: int) -> None:
        self.last = last

    def on_step_end(self, view: FitView, step: int) -> None:
        if step == 1:
            torch.cuda.set_sync_debug_mode("warn")
        elif step == self.last:
            torch.cuda.set_sync_debug_mode(0)


@pytest.mark.parametrize("kwargs", [{}, {"amp": "bf16", "channels_last": True}])
def test_steps_do_not_synchronise_with_the_host(kwargs: dict[str, Any]) -> None:
    n = 6
    ins, outs = _batches(n)
    outs = [outs[0][: 80 * n - 7], outs[0][80 * n - 7 :]]  # re-cutting crosses batches
    # a first run settles what CUDA initialises lazily, once per process
    SelfSupervisedOODFinetuner(_net(), epochs=1, progress=False, **kwargs).fit(ins, outs)
    ft = SelfSupervisedOODFinetuner(
        _net(), epochs=1, progress=False, callbacks=[_SyncDebugBetween(n)], **kwargs
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ft.fit(ins, outs)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    # (setting the mode also warns, once per process, that it is a prototype)
    syncs = [
        f"{w.filename}:{w.lineno}: {w.message}"
        for w in caught
        if "called a synchronizing" in str(w.message)
    ]
    assert syncs == [], syncs


def test_bf16_channels_last_training_on_cuda() -> None:
    net = _net()
    ins, outs = _batches(6)
    hist = SelfSupervisedOODFinetuner(
        net, epochs=3, progress=False, amp="bf16", channels_last=True, lr=0.05
    ).fit(ins, outs)
    assert net.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert hist[-1].loss < hist[0].loss
    assert hist[-1].out_on_reject is not None and hist[-1].out_on_reject > 0.5


def test_pinned_loader_and_fp16_scaler() -> None:
    ds = in_distribution(96)
    loader = DataLoader(ds, batch_size=16, shuffle=True, pin_memory=True)
    model = DropoutCNN().cuda()
    hist = train_classifier(model, loader, epochs=2, lr=0.05, progress=False, amp="fp16")
    assert hist[-1].loss == hist[-1].loss


def test_non_finite_loss_is_reported_with_its_step_on_cuda() -> None:
    ds = in_distribution()
    x = ds.tensors[0].clone()
    x[40] = float("nan")  # batch 3
    loader = DataLoader(TensorDataset(x, ds.tensors[1]), batch_size=16)
    with pytest.raises(FloatingPointError, match=r"at step 3 \(epoch 1\); noticed at step 6"):
        train_classifier(DropoutCNN().cuda(), loader, epochs=1, progress=False)


def test_deployable_on_cuda_matches_predict() -> None:
    net = _net().eval()
    net.calibrate([in_distribution(64).tensors[0]], coverage=0.9)
    x = torch.cat([in_distribution(8, seed=3).tensors[0], outliers(8, seed=4).tensors[0]]).cuda()
    labels, score, is_ood = net.deployable()(x)
    pred = net.predict(x)
    assert torch.equal(labels, pred.labels) and torch.equal(score, pred.ood_score)
    assert torch.equal(is_ood, pred.is_ood)
