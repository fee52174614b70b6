"""Temperature scaling: the buffer, fit_temperature, and its use on every path."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

import rejectnet
from rejectnet import RejectHead
from rejectnet.temperature import T_MAX, T_MIN, fit_temperature_to, nll


def _net() -> RejectHead:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 4))
    return RejectHead.wrap(model, k=3).eval()


def test_buffer_defaults_to_one_and_travels_in_the_state_dict() -> None:
    net = _net()
    assert net.temperature.dtype == torch.float32 and float(net.temperature) == 1.0
    assert "temperature" in net.state_dict()
    net.set_temperature(1.5)
    net.half()
    assert net.temperature.dtype == torch.float32 and float(net.temperature) == 1.5
    other = _net()
    other.load_state_dict(net.float().state_dict())
    assert float(other.temperature) == 1.5


def test_unit_temperature_is_bit_for_bit_no_scaling() -> None:
    net = _net()
    x = torch.randn(50, 6)
    logits = net(x)
    for score in ("sum_reject", "max_reject", "entropy_diff", "energy"):
        s = net.ood_score(x, score)
        assert torch.equal(s, net._score(logits, score))  # the T = 1 path skips the division
    net.set_temperature(2.0)
    assert torch.equal(
        net.ood_score(x),
        rejectnet.decision.compute_score(
            logits / 2.0,
            "sum_reject",
            4,
            rejectnet.decision.column_weights(
                "sum_reject", 4, net.k, net.score_weights, torch.float32, x.device
            ),
        ),
    )


def test_fit_recovers_a_known_temperature() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 7, generator=g) * 4.0
    y = torch.distributions.Categorical(logits=z[:, :4] / 2.0 + 0.0).sample()
    t = fit_temperature_to(z, y, 4)
    # the optimum: no other temperature has a lower NLL
    for other in (t * 0.9, t * 1.1, 1.0):
        assert nll(z, y, t) <= nll(z, y, other) + 1e-12
    assert T_MIN <= t <= T_MAX


def test_fit_clips_to_the_range() -> None:
    z = torch.tensor([[10.0, 0.0], [0.0, 10.0]])
    assert fit_temperature_to(z, torch.tensor([0, 1]), 2) == T_MIN  # always right
    assert fit_temperature_to(z, torch.tensor([1, 0]), 2) == T_MAX  # always wrong


def test_fit_temperature_on_the_model_then_calibrate() -> None:
    net = _net()
    g = torch.Generator().manual_seed(3)
    x = torch.randn(300, 6, generator=g)
    y = net(x)[:, :4].argmax(1)
    y[:60] = torch.randint(0, 4, (60,), generator=g)  # some noise
    net.calibrate([x], coverage=0.9)
    with pytest.warns(UserWarning, match="threshold calibrated at the old temperature"):
        t = net.fit_temperature([(x[:150], y[:150]), {"x": x[150:], "y": y[150:]}])
    assert not net.is_calibrated, "a stale threshold is cleared"
    assert float(net.temperature) == pytest.approx(t) and t != 1.0
    with pytest.raises(RuntimeError, match="no threshold"):
        net.predict(x)
    net.calibrate([x], coverage=0.9)
    pred = net.predict(x)
    z = net(x)
    assert torch.allclose(pred.probs, torch.softmax(z[:, :4] / t, dim=1), atol=1e-6)
    assert torch.equal(pred.classes, z[:, :4].argmax(1))


def test_fit_temperature_errors_change_nothing() -> None:
    net = _net()
    x = torch.randn(20, 6)
    with pytest.raises(ValueError, match="carry no labels"):
        net.fit_temperature([x])
    with pytest.raises(ValueError, match=r"class indices in \[0, 4\)"):
        net.fit_temperature([(x, torch.full((20,), 5))])
    with pytest.raises(ValueError, match="integer class indices"):
        net.fit_temperature([(x, torch.rand(20))])
    with pytest.raises(TypeError, match="iterable of batches"):
        net.fit_temperature(x)  # type: ignore[arg-type]
    assert float(net.temperature) == 1.0


@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan])
def test_set_temperature_validates(value: float) -> None:
    net = _net()
    with pytest.raises(ValueError, match="temperature must be a finite temperature > 0"):
        net.set_temperature(value)
    with pytest.raises(TypeError, match="temperature"):
        net.set_temperature("2")  # type: ignore[arg-type]
    assert float(net.temperature) == 1.0


@pytest.mark.parametrize("score", ["sum_reject", "weighted_reject", "max_reject", "energy"])
def test_temperature_reaches_deployable_and_onnx(score: str, tmp_path: Path) -> None:
    net = _net()
    net.score_weights.copy_(torch.tensor([0.5, 2.0, 1.0]))
    net.set_temperature(3.0)
    g = torch.Generator().manual_seed(4)
    net.calibrate([torch.randn(200, 6, generator=g)], coverage=0.6, score=score)
    x = torch.randn(64, 6, generator=g)
    pred = net.predict(x)
    labels, s, is_ood = net.deployable()(x)
    assert torch.equal(s, pred.ood_score) and torch.equal(is_ood, pred.is_ood)
    assert torch.equal(labels, pred.labels)
    assert bool(is_ood.any()) and bool((~is_ood).any())
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    path = rejectnet.export_onnx(net, tmp_path / "m.onnx", x[:4])
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    o_labels, o_score, o_ood = (torch.from_numpy(a) for a in sess.run(None, {"images": x.numpy()}))
    assert torch.allclose(o_score, pred.ood_score, rtol=0.0, atol=1e-5)
    clear = (pred.ood_score.double() - float(net.threshold)).abs() > 1e-5
    assert torch.equal(o_ood[clear], pred.is_ood[clear])
    assert torch.equal(o_labels[clear], pred.labels[clear])
