"""Inference runs in eval mode (predict / ood_score on a training model; `eval_mode`).

The policy: inference always runs every submodule in eval mode and restores each
submodule's own mode afterwards; batch-norm running statistics never change, and an
input's decision never depends on the rest of the batch.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet._inference import checked_logits, eval_mode
from rejectnet.input_spec import ModelInput


class BNCNN(nn.Module):
    """A small CNN with batch norm and dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1),
            nn.BatchNorm2d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(2),
            nn.Flatten(),
            nn.Dropout(0.5),
        )
        self.fc = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


def _net() -> RejectHead:
    torch.manual_seed(0)
    net = RejectHead.wrap(BNCNN(), k=2)
    with torch.no_grad():  # running statistics unlike a fresh batch's
        bn = net.model.body[1]
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.5, 2.0)
    return net


def _bn_state(net: RejectHead) -> list[torch.Tensor]:
    bn = net.model.body[1]
    return [bn.running_mean.clone(), bn.running_var.clone(), bn.num_batches_tracked.clone()]


def test_predict_in_training_mode_is_predict_in_eval_mode_and_changes_nothing() -> None:
    net = _net().train()
    g = torch.Generator().manual_seed(1)
    val = torch.randn(64, 1, 8, 8, generator=g)
    net.calibrate([val], coverage=0.8)
    x = torch.randn(32, 1, 8, 8, generator=g) * 2 + 0.5
    before = _bn_state(net)
    got = net.predict(x)
    scores = net.ood_score(x)
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_state(net), strict=True))
    assert net.training and all(m.training for m in net.modules()), "mode restored"
    net.eval()
    want = net.predict(x)
    assert torch.equal(got.labels, want.labels) and torch.equal(got.ood_score, want.ood_score)
    assert torch.equal(scores, want.ood_score)
    # one input's score does not depend on the rest of the batch (up to the kernels'
    # batch-size-dependent float rounding; in training mode it would change by far more)
    net.train()
    rows = torch.cat([net.predict(x[i : i + 1]).ood_score for i in range(8)])
    assert torch.allclose(rows, got.ood_score[:8], rtol=0.0, atol=1e-6)
    with torch.no_grad():
        train_mode = net.score_logits(net(x))[:8]  # what a training-mode pass would give
    assert not torch.allclose(train_mode, got.ood_score[:8], rtol=0.0, atol=1e-3)


def test_each_submodule_keeps_its_own_mode() -> None:
    net = _net().train()
    net.model.body[1].eval()  # a frozen batch norm inside a training model
    modes = {name: m.training for name, m in net.named_modules()}
    net.set_threshold(0.5)
    net.predict(torch.randn(4, 1, 8, 8))
    net.ood_score(torch.randn(4, 1, 8, 8))
    net.calibrate([torch.randn(16, 1, 8, 8)])
    assert {name: m.training for name, m in net.named_modules()} == modes


def test_eval_mode_restores_modes_after_an_error() -> None:
    net = _net().train()
    net.model.fc.eval()
    modes = [m.training for m in net.modules()]
    try:
        with eval_mode(net):
            assert not any(m.training for m in net.modules())
            raise KeyError("boom")
    except KeyError:
        pass
    assert [m.training for m in net.modules()] == modes


def test_forward_still_runs_in_the_current_mode() -> None:
    net = _net().train()
    before = _bn_state(net)
    net(torch.randn(8, 1, 8, 8))  # a training step's forward updates the statistics
    assert not torch.equal(before[0], _bn_state(net)[0])


def test_checked_logits_checks_runs_in_eval_mode_and_restores_modes() -> None:
    model = nn.Sequential(nn.Linear(4, 5), nn.Dropout(0.9))
    model.train()
    rule = ModelInput(dtype=torch.float32)
    x = torch.randn(3, 4)
    logits = checked_logits(model, model, x, rule, 5, "0")
    assert torch.equal(logits, model[0](x))  # dropout off
    assert all(m.training for m in model.modules())  # modes restored
    with pytest.raises(RuntimeError, match=r"expected \(N, 6\)"):
        checked_logits(model, model, x, rule, 6, "0")
    bad = x.clone()
    bad[2, 1] = float("inf")
    with pytest.raises(ValueError, match=r"\(rows 2\)"):
        checked_logits(model, model, bad, rule, 5, "0")
    with pytest.raises(TypeError, match="float64"):
        checked_logits(model, model, x.double(), rule, 5, "0")
