"""The open Finetuner: custom objectives, the loss a custom loop computes, accumulation,
train mode, pre-flight refusals before any weight change, progress output, the signal hook."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rejectnet import RejectHead, SelfSupervisedOODFinetuner
from rejectnet.finetune import Callback, Finetuner, FitView, TrainOptions
from rejectnet.losses import OutlierExposureLoss, SelfSupervisedRejectLoss
from tests.finetune.helpers import DropoutCNN, loaders


def _weights(m: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and batch-norm buffers (not the unset, NaN threshold)."""
    return {k: v.detach().clone() for k, v in m.state_dict().items() if k != "threshold"}


def _same(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def _net(k: int = 3) -> RejectHead:
    torch.manual_seed(0)
    return RejectHead.wrap(DropoutCNN(), k=k)


class Record(Callback):
    def __init__(self) -> None:
        self.views: list[FitView] = []

    def on_step_end(self, view: FitView, step: int) -> None:
        self.views.append(view)


def test_custom_loop_loss_equals_the_finetuners_loss() -> None:
    """The loss a user computes with rejectnet.losses in their own loop is exactly the one
    SelfSupervisedOODFinetuner optimises: same batch, same weights, same RNG state."""
    net = _net()
    in_loader, out_loader = loaders()
    x_in, y = in_loader.dataset.tensors[0][:16], in_loader.dataset.tensors[1][:16]  # type: ignore[attr-defined]
    x_out = out_loader.dataset.tensors[0][:80]  # type: ignore[attr-defined]
    # the custom loop: seed, train mode, ONE forward over [x_in; x_out], the public loss
    mine = copy.deepcopy(net).train()
    torch.manual_seed(11)
    logits = mine(torch.cat([x_in, x_out]))
    loss = SelfSupervisedRejectLoss(mine.num_classes, lam=5.0)(logits[:16], y, logits[16:])
    # the fine-tuner, one step on the same batch (its epoch mean over one step is that loss)
    ft = SelfSupervisedOODFinetuner(net, epochs=1, seed=11, progress=False)
    stats = ft.fit([(x_in, y)], [x_out])[0]
    assert stats.steps == 1
    assert stats.loss == float(loss.detach())


def test_any_callable_objective_and_options_object() -> None:
    calls: list[int] = []

    def objective(li: torch.Tensor, y: torch.Tensor, lo: torch.Tensor | None) -> torch.Tensor:
        assert lo is not None
        calls.append(int(lo.shape[0]))
        return F.cross_entropy(li, y) + 0.1 * lo.logsumexp(-1).mean()

    net = _net()
    before = _weights(net)
    opts = TrainOptions(epochs=1, progress=False, outlier_ratio=2.0)
    hist = Finetuner(net, objective, options=opts, name="mine").fit(*loaders())
    assert not _same(before, _weights(net))
    assert calls == [32] * 6  # batches of 16, outlier batches 2x
    assert hist[0].out_loss is None  # a plain callable reports only its total
    with pytest.raises(TypeError, match="objective must be a callable"):
        Finetuner(net, "ce")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="options must be a TrainOptions"):
        Finetuner(net, objective, options={"epochs": 1})  # type: ignore[arg-type]


def test_gradient_accumulation_matches_the_full_batch() -> None:
    """Two half batches accumulated = one full batch (OE: the loss is a per-row mean)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    x = torch.randn(16, 1, 8, 8)
    y = torch.randint(0, 3, (16,))
    out = torch.randn(80, 1, 8, 8) * 3
    full, accum = copy.deepcopy(model), copy.deepcopy(model)
    kw: dict[str, Any] = dict(epochs=1, progress=False, lr=0.1, momentum=0.0, scheduler=None)
    Finetuner(full, OutlierExposureLoss(0.5), **kw).fit([(x, y)], [out])
    rec = Record()
    Finetuner(
        accum, OutlierExposureLoss(0.5), accumulate_grad_batches=2, callbacks=[rec], **kw
    ).fit([(x[:8], y[:8]), (x[8:], y[8:])], [out])
    assert [v.step for v in rec.views] == [1]  # one optimizer step for two batches
    for a, b in zip(full.parameters(), accum.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # and without accumulation the same two half batches give another result
    two = copy.deepcopy(model)
    Finetuner(two, OutlierExposureLoss(0.5), **kw).fit([(x[:8], y[:8]), (x[8:], y[8:])], [out])
    assert not torch.allclose(next(two.parameters()), next(full.parameters()), atol=1e-6)


def test_partial_accumulation_group_is_stepped_at_epoch_end() -> None:
    rec = Record()
    ft = SelfSupervisedOODFinetuner(
        _net(), epochs=2, progress=False, accumulate_grad_batches=4, callbacks=[rec]
    )
    hist = ft.fit(*loaders())  # 6 batches per epoch: groups of 4 and 2
    assert [v.step for v in rec.views] == [1, 2, 3, 4]
    assert [e.steps for e in hist] == [2, 2]


def test_trains_in_train_mode_whatever_mode_the_model_was_in() -> None:
    net = _net().eval()  # evaluated first, as everyone does
    modes: list[bool] = []
    net.model.register_forward_pre_hook(lambda m, a: modes.append(m.training))
    bn = next(m for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    stats_before = bn.running_mean.clone()
    SelfSupervisedOODFinetuner(net, epochs=1, progress=False).fit(*loaders())
    assert modes[0] is False  # the pre-flight probe runs in eval mode
    assert all(modes[1:]) and len(modes) == 7
    assert not torch.equal(stats_before, bn.running_mean)  # batch norm saw training batches


class CountingSignal:
    """A minimal outlier signal: synthesises outliers by flipping in-distribution images
    and adds two virtual outlier rows through the reject head."""

    def __init__(self) -> None:
        self.attached: nn.Module | None = None
        self.batches = 0
        self.detached = False

    def attach(self, model: nn.Module) -> None:
        self.attached = model

    def detach(self) -> None:
        self.detached = True

    def outlier_batch(
        self, x_in: torch.Tensor, y: torch.Tensor, x_out: torch.Tensor | None, n: int
    ) -> torch.Tensor:
        self.batches += 1
        assert x_out is None
        reps = -(-n // x_in.shape[0])
        return x_in.flip(-1).repeat(reps, 1, 1, 1)[:n]

    def extra_outlier_logits(self, n_in: int, y: torch.Tensor) -> torch.Tensor | None:
        assert isinstance(self.attached, RejectHead)
        return self.attached.head(torch.zeros(2, self.attached.head.base.in_features))

    def state_dict(self) -> dict[str, Any]:
        return {"batches": self.batches}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.batches = int(state["batches"])


def test_outlier_signal_without_a_pool() -> None:
    net = _net()
    sig = CountingSignal()
    ft = SelfSupervisedOODFinetuner(net, epochs=1, progress=False, outlier_signal=sig)
    in_loader, _ = loaders()
    hist = ft.fit(in_loader, None)
    assert sig.attached is net and sig.detached and sig.batches == 6
    assert hist[0].out_on_reject is not None and hist[0].out_loss is not None
    with pytest.raises(TypeError, match="outlier_signal must be an outlier signal"):
        SelfSupervisedOODFinetuner(net, outlier_signal=object())
