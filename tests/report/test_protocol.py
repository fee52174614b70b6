"""The compute step: the paper's protocol on scores (rejectnet.report.protocol)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet.evaluation import evaluate
from rejectnet.metrics import ood_metrics
from rejectnet.scores import sum_reject
from tests.report.conftest import _data


def test_equal_sizes_and_agreement_with_metrics() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    rep = evaluate(net, id_loader, ood, n_runs=4, seed=3)
    assert rep.ood["far"].n == 40 and rep.ood["near"].n == 50 and rep.ood["far"].n_ood == 40
    assert rep.ood["mixed"].n == 60 and rep.ood["mixed"].n_ood == 80  # 40 from each set
    with torch.no_grad():
        x_in = torch.cat([b[0] for b in id_loader])
        s_in = sum_reject(net(x_in), 3).double().numpy()
        s_near = sum_reject(net(torch.cat(ood["near"])), 3).double().numpy()
    # 'near' has 50 < 60 samples: the in-side is subsampled; with one run per subsample
    # the mean must lie within the range of metrics over subsamples of s_in
    rng = np.random.default_rng(0)
    aurocs = [ood_metrics(rng.choice(s_in, 50, replace=False), s_near)["auroc"] for _ in range(300)]
    assert min(aurocs) - 1e-12 <= rep.ood["near"].mean["auroc"] <= max(aurocs) + 1e-12
    assert rep.ood["near"].std["auroc"] > 0
    # equal sizes -> no subsampling -> exact metrics, zero std
    same = evaluate(net, [x_in[:40]], {"far": ood["far"]}, n_runs=3, mixed=False)
    exact = ood_metrics(
        s_in[:40], sum_reject(net(torch.cat(ood["far"])), 3).detach().double().numpy()
    )
    assert same.ood["far"].mean["auroc"] == pytest.approx(exact["auroc"], abs=1e-12)
    assert same.ood["far"].std["fpr95"] == 0.0
    assert same.ood["far"].runs == 1 and rep.ood["near"].runs == 4
    assert "mixed" not in same.ood and same.id_accuracy is None


def test_accuracy_and_selective() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    with torch.no_grad():  # reject units that fire on large inputs: 'far' is detectable
        net.head.reject.weight.copy_(torch.tensor([[2.0, 2.0, 2.0, 2.0]] * 2))
        net.head.reject.bias.fill_(-12.0)
    id_loader, ood = _data()
    rep = evaluate(net, id_loader, {"far": ood["far"]}, mixed=False)
    with torch.no_grad():
        logits = torch.cat([net(b[0]) for b in id_loader])
    y = torch.cat([b[1] for b in id_loader])
    assert rep.id_accuracy == pytest.approx(float((logits[:, :3].argmax(1) == y).double().mean()))
    sel = rep.selective
    accepted = rep.scores_in <= sel["threshold"]
    assert sel["coverage"] == pytest.approx(accepted.mean()) and sel["coverage"] > 0.5
    assert rep.correct is not None
    assert sel["risk"] == pytest.approx((~rep.correct[accepted]).mean())
    assert sel["risk_without_rejection"] == pytest.approx(1 - rep.id_accuracy)
    assert float((rep.scores_out["far"] > sel["threshold"]).mean()) >= 0.95
    n_out_accepted = int((rep.scores_out["far"] <= sel["threshold"]).sum())
    errors = int((~rep.correct[accepted]).sum())
    assert sel["total_misclassification"] == pytest.approx((errors + n_out_accepted) / 60)


def test_one_ood_set_has_no_mixed_row() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    rep = evaluate(net, id_loader, {"far": ood["far"]}, n_runs=3)
    assert list(rep.ood) == ["far"] and "mixed" not in rep.scores_out
    assert "one OOD set, so no mixed row" in rep.notes
    assert "selective threshold: 95% TPR on far" in rep.notes
    md = rep.to_markdown()
    assert "| mixed |" not in md and "- one OOD set, so no mixed row" in md
    two = evaluate(net, id_loader, ood, n_runs=3)
    assert list(two.ood) == ["far", "near", "mixed"]
    assert any(n.startswith("mixed: 40 samples from each of the 2 OOD sets") for n in two.notes)


def test_equal_sizes_are_not_subsampled_nor_given_a_fake_spread() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    x = torch.randn(40, 4)
    rep = evaluate(net, [x], {"far": [torch.randn(40, 4) + 2]}, n_runs=10)
    res = rep.ood["far"]
    assert res.runs == 1 and not res.subsampled and res.n == res.n_in == res.n_ood == 40
    assert rep.notes[0] == "far: 40 in-distribution vs 40 OOD samples, no subsampling (equal sizes)"
    row = next(line for line in rep.to_markdown().splitlines() if "| far |" in line)
    assert "±" not in row  # a single exact run is printed as a bare number
    # with unequal sizes every metric is mean ± std over the requested runs
    rep2 = evaluate(net, [x], {"far": [torch.randn(30, 4) + 2]}, n_runs=10)
    assert rep2.ood["far"].runs == 10 and rep2.ood["far"].subsampled
    assert rep2.notes[0] == (
        "far: in-distribution side subsampled to 30 of 40 samples, "
        "mean ± std over 10 random subsamples"
    )
    row2 = next(line for line in rep2.to_markdown().splitlines() if "| far |" in line)
    assert row2.count("±") == 5


def test_a_sets_subsamples_do_not_depend_on_the_other_sets_or_their_order() -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(nn.Linear(4, 3), k=2)
    id_loader, ood = _data()
    alone = evaluate(net, id_loader, {"near": ood["near"]}, n_runs=5, seed=3)
    both = evaluate(net, id_loader, {"far": ood["far"], "near": ood["near"]}, n_runs=5, seed=3)
    swapped = evaluate(net, id_loader, {"near": ood["near"], "far": ood["far"]}, n_runs=5, seed=3)
    assert alone.ood["near"].runs == 5  # 60 in vs 50 out: really subsampled
    assert alone.ood["near"].mean == both.ood["near"].mean == swapped.ood["near"].mean
    assert both.ood["far"].mean == swapped.ood["far"].mean
    assert both.ood["mixed"].mean == swapped.ood["mixed"].mean
    other = evaluate(net, id_loader, {"near": ood["near"]}, n_runs=5, seed=4)
    assert other.ood["near"].mean != alone.ood["near"].mean  # the seed still matters
