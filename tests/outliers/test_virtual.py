"""Virtual outliers in feature space, captured from the head's input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rejectnet import RejectHead
from rejectnet.outliers import VirtualOutliers, head_of


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def _step(model: nn.Module, vo: VirtualOutliers, seed: int) -> torch.Tensor | None:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 4, generator=g), torch.randint(0, 3, (16,), generator=g)
    model(torch.cat([x, torch.randn(8, 4, generator=g)]))
    return vo.extra_outlier_logits(16, y)


def test_warmup_then_logits_through_the_head_with_grad_to_the_head_only() -> None:
    net = RejectHead.wrap(_model(), k=2)
    vo = VirtualOutliers(ratio=0.5, queue_size=40, warmup=40)
    vo.attach(net)
    assert _step(net, vo, 0) is None and _step(net, vo, 1) is None  # 32 rows < 40
    extra = _step(net, vo, 2)
    assert extra is not None and extra.shape == (8, 5)
    extra.sum().backward()
    assert net.head.reject.weight.grad is not None and net.head.base.weight.grad is not None
    assert net.model[0].weight.grad is None  # the backbone is not involved
    vo.detach()


def test_plain_classifier_head_and_num_classes() -> None:
    model = _model()
    head, c = head_of(model)
    assert head is model[2] and c == 3
    net = RejectHead.wrap(_model(), k=4)
    head, c = head_of(net)
    assert head is net.head and c == 3


def test_samples_lie_on_the_shell() -> None:
    vo = VirtualOutliers(shell=(1.0, 1.5))
    vo.num_classes = 2
    mu = torch.tensor([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]])
    vo.stats = {
        "mu": mu,
        "chol": torch.diag(torch.tensor([1.0, 2.0, 3.0])),
        "d99": torch.tensor(2.0),
        "labels": torch.tensor([0, 1, 1]),
    }
    torch.manual_seed(0)
    s = vo.sample(500)
    white = torch.stack([(s - m) / torch.tensor([1.0, 2.0, 3.0]) for m in mu]).norm(dim=2)
    r = white.amin(dim=0)  # Mahalanobis radius to the nearer (its own) class
    assert float(r.min()) >= 2.0 - 1e-4 and float(r.max()) <= 3.0 + 1e-4


def test_fit_matches_numpy_statistics() -> None:
    torch.manual_seed(0)
    vo = VirtualOutliers(queue_size=64, ridge=0.0)
    vo.num_classes = 2
    f, y = torch.randn(64, 3), torch.arange(64) % 2
    vo._enqueue(f, y)
    stats = vo._fit()
    mu = torch.stack([f[y == c].mean(0) for c in range(2)])
    centered = f - mu[y]
    cov = centered.T @ centered / 64
    assert torch.allclose(stats["mu"], mu, atol=1e-5)
    assert torch.allclose(stats["chol"] @ stats["chol"].T, cov, atol=1e-5)


def test_resume_gives_the_same_logits() -> None:
    def run(split: int | None) -> list[torch.Tensor]:
        torch.manual_seed(0)
        net = RejectHead.wrap(_model(), k=2)
        vo = VirtualOutliers(ratio=1.0, queue_size=32, refresh=3)
        vo.attach(net)
        out = []
        for s in range(8):
            if split is not None and s == split:
                state, rng = vo.state_dict(), torch.get_rng_state()
                vo.detach()
                vo = VirtualOutliers(ratio=1.0, queue_size=32, refresh=3)
                vo.load_state_dict(state)
                vo.attach(net)
                torch.set_rng_state(rng)
            e = _step(net, vo, s)
            if e is not None:
                out.append(e.detach())
        vo.detach()
        return out

    a, b = run(None), run(5)
    assert len(a) == 7 and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_hook_ignores_eval_passes_and_detach_removes_it() -> None:
    model = _model()
    vo = VirtualOutliers(queue_size=4, warmup=4)
    vo.attach(model)
    model.eval()
    model(torch.randn(5, 4))
    assert vo.extra_outlier_logits(5, torch.zeros(5, dtype=torch.long)) is None
    model.train()
    vo.detach()
    model(torch.randn(5, 4))
    with pytest.raises(RuntimeError, match="not attached"):
        vo.extra_outlier_logits(5, torch.zeros(5, dtype=torch.long))
    assert not model[2]._forward_pre_hooks


def test_bad_arguments_and_states_are_rejected_without_change() -> None:
    for kwargs, name in [
        ({"ratio": -1.0}, "ratio"),
        ({"queue_size": 1}, "queue_size"),
        ({"shell": (0.0, 1.0)}, "shell"),
        ({"refresh": 0}, "refresh"),
        ({"warmup": 0}, "warmup"),
    ]:
        with pytest.raises(ValueError, match=name):
            VirtualOutliers(**kwargs)  # type: ignore[arg-type]
    model = _model()
    vo = VirtualOutliers(queue_size=8)
    vo.attach(model)
    with pytest.raises(RuntimeError, match="already attached"):
        vo.attach(model)
    _step(model, vo, 0)
    before = vo.state_dict()
    with pytest.raises(ValueError, match="queue_size"):
        vo.load_state_dict({**before, "feats": torch.zeros(5, 8), "labels": torch.zeros(5)})
    with pytest.raises(ValueError, match="keys"):
        vo.load_state_dict({"feats": None})
    with pytest.raises(ValueError, match="ptr"):
        vo.load_state_dict({**before, "ptr": -1})
    assert vo.feats is not None and torch.equal(vo.feats, before["feats"])
    assert vo.seen == before["seen"]
    vo.detach()


def test_nonnegative_clamps_samples() -> None:
    vo = VirtualOutliers(nonnegative=True)
    vo.num_classes = 1
    vo.stats = {
        "mu": torch.zeros(1, 4),
        "chol": torch.eye(4),
        "d99": torch.tensor(3.0),
        "labels": torch.zeros(2, dtype=torch.long),
    }
    s = vo.sample(200)
    assert float(s.min()) == 0.0 and float(s.max()) > 0
    with pytest.raises(TypeError, match="nonnegative"):
        VirtualOutliers(nonnegative=1)  # type: ignore[arg-type]
