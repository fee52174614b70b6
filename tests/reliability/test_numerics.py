"""NaN/inf never becomes a silent NaN decision; half precision decides like float32.

* NaN or +-inf anywhere in the input of a score, metric or threshold function, or in
  the logits a model produces during calibration or prediction, raises ``ValueError``.
* Finite input, however extreme, gives finite scores and finite thresholds.
* float16 / bfloat16 logits give the same ``is_ood`` decisions at a fixed threshold and
  the same argmax as float32, for every sample with a margin and >= 99% of all samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn

from rejectnet import RejectHead, metrics, scores
from tests.conftest import ReliabilityCounts
from tests.reliability._helpers import same_weights, snapshot

BAD_VALUES = {"nan": math.nan, "+inf": math.inf, "-inf": -math.inf}
C, K = 4, 3


def _kwargs(name: str) -> dict[str, Any]:
    return {"weights": [1.0, 0.5, 2.0]} if name == "weighted_reject" else {}


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
def test_scores_refuse_nonfinite_logits(bad: str, reliability: ReliabilityCounts) -> None:
    for name in scores.available():
        for column in (0, C + K - 1):  # a class logit and a reject logit
            for as_numpy in (False, True):
                z = torch.randn(6, C + K, generator=torch.Generator().manual_seed(0))
                z[3, column] = BAD_VALUES[bad]
                arg: Any = z.numpy().copy() if as_numpy else z.clone()
                if scores.spec(name).kind == "baseline" and column >= C:
                    continue  # baselines see only the C class logits
                with pytest.raises(ValueError, match=r"logits.*(NaN|infinite)"):
                    scores.compute(name, arg, num_classes=C, **_kwargs(name))
                reliability.fault()


def _with(values: list[float], bad: float) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    a[len(a) // 2] = bad
    return a


METRIC_CALLS: dict[str, Callable[[Any, Any], Any]] = {
    "auroc": metrics.auroc,
    "aupr_in": metrics.aupr_in,
    "aupr_out": metrics.aupr_out,
    "fpr_at_tpr": metrics.fpr_at_tpr,
    "detection_error": metrics.detection_error,
    "ood_metrics": metrics.ood_metrics,
    "threshold_at_tpr": scores.threshold_at_tpr,
    "tmr": lambda a, b: metrics.total_misclassification_rate(a, [True] * len(a), b, 0.5),
}
SINGLE_CALLS: dict[str, Callable[[Any], Any]] = {
    "risk_coverage": lambda a: metrics.risk_coverage(a, [True] * len(a)),
    "aurc": lambda a: metrics.aurc(a, [i % 2 == 0 for i in range(len(a))]),
    "threshold_for_coverage": scores.threshold_for_coverage,
    "threshold_for_risk": lambda a: scores.threshold_for_risk(a, [True] * len(a), 0.5),
}


@pytest.mark.parametrize("bad", sorted(BAD_VALUES))
def test_metrics_and_thresholds_refuse_nonfinite_scores(
    bad: str, reliability: ReliabilityCounts
) -> None:
    good = [0.1, 0.4, 0.2, 0.9, 0.3]
    for fn in METRIC_CALLS.values():
        for side in ("s_in", "s_out"):
            a = _with(good, BAD_VALUES[bad]) if side == "s_in" else np.asarray(good)
            b = _with(good, BAD_VALUES[bad]) if side == "s_out" else np.asarray(good)
            for convert in (np.asarray, torch.from_numpy, list):
                with pytest.raises(ValueError, match=rf"{side}.*NaN or infinite"):
                    fn(convert(a), convert(b))
                reliability.fault()
    for single in SINGLE_CALLS.values():
        with pytest.raises(ValueError, match=r"(scores|s_in).*NaN or infinite"):
            single(_with(good, BAD_VALUES[bad]))
        reliability.fault()
    z = torch.randn(4, C + K)
    z[1, 1] = BAD_VALUES[bad]
    with pytest.raises(ValueError, match=r"logits_in.*NaN or infinite"):
        scores.fit_reject_weights(z, torch.randn(4, C + K), C)
    reliability.fault()


class Overflowing(nn.Module):
    """A classifier whose logits overflow to inf for inputs with a large first pixel."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) * torch.where(x[:, :1] > 10, 1e38, 1.0)


@pytest.mark.parametrize("bad", [*sorted(BAD_VALUES), "overflow"])
@pytest.mark.parametrize("score", ["sum_reject", "entropy_diff", "energy"])
def test_calibrate_and_predict_refuse_nonfinite_logits(
    bad: str, score: str, reliability: ReliabilityCounts
) -> None:
    torch.manual_seed(0)
    net = RejectHead.wrap(Overflowing(), k=K).eval()
    net.set_threshold(0.25, "max")
    x = torch.randn(40, 4)
    x[17, 2 if bad != "overflow" else 0] = BAD_VALUES[bad] if bad != "overflow" else 1e6
    before, x_before = snapshot(net), x.clone()
    loader = [x[:20], x[20:]]
    with pytest.raises(ValueError, match=r"loader.*rows 17"):
        net.calibrate(loader, coverage=0.9, score=score)
    with pytest.raises(ValueError, match=r"\bx\b.*rows 17"):
        net.predict(x)
    with pytest.raises(ValueError, match=r"\bx\b.*rows 17"):
        net.ood_score(x, score)
    reliability.fault(3)
    assert same_weights(net, before), "the threshold (and weights) are unchanged"
    assert float(net.threshold) == 0.25 and net.calibrated_score == "max_reject"
    assert torch.equal(x.isnan(), x_before.isnan())


# ---------------------------------------------------------------- extreme finite input
# float32 logits, with the extremes (whose differences overflow to -inf) drawn often
finite32 = st.one_of(
    st.sampled_from([-3.4e38, -1e38, -1.0, 0.0, 1.0, 1e38, 3.4e38]),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
)


@settings(max_examples=80, deadline=None)
@given(rows=st.lists(st.lists(finite32, min_size=C + K, max_size=C + K), min_size=1, max_size=6))
@example(rows=[[3e38, -3e38, 0.0, 1.0, -3e38, 1.0, 2.0], [-3e38, 3e38, -3e38, 0.0, 3e38, 0, 0]])
def test_extreme_finite_logits_give_finite_scores(
    rows: list[list[float]], reliability: ReliabilityCounts
) -> None:
    z = torch.tensor(rows, dtype=torch.float32)
    for name in scores.available():
        out = scores.compute(name, z, num_classes=C, **_kwargs(name))
        assert bool(torch.isfinite(out).all()), (name, z, out)
        reliability.case()


any_finite = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=100, deadline=None)
@given(
    s_in=st.lists(any_finite, min_size=1, max_size=20),
    s_out=st.lists(any_finite, min_size=1, max_size=20),
    rate=st.floats(0.01, 1.0),
)
def test_thresholds_on_finite_scores_are_finite(
    s_in: list[float], s_out: list[float], rate: float, reliability: ReliabilityCounts
) -> None:
    assert math.isfinite(scores.threshold_for_coverage(s_in, coverage=rate).value)
    try:
        value = scores.threshold_at_tpr(s_in, s_out, tpr=rate).value
    except ValueError as err:  # only when the flagged scores sit at the lowest float
        assert "lowest float" in str(err)
    else:
        assert math.isfinite(value)
    correct = [i % 3 != 0 for i in range(len(s_in))]
    try:
        risk = scores.threshold_for_risk(s_in, correct, 0.9, delta=0.2)
    except ValueError as err:
        assert "not achievable" in str(err)
    else:
        assert math.isfinite(risk.value) and math.isfinite(risk.risk_bound or 0.0)
    reliability.case(3)


# ---------------------------------------------------------------- half precision
N_SAMPLES = 2000


def _logits(seed: int) -> torch.Tensor:
    """Logits of a trained-looking model: some samples confidently in, some out."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N_SAMPLES, C + K, generator=g) * 2.0
    winner = torch.randint(0, C + K, (N_SAMPLES,), generator=g)
    z[torch.arange(N_SAMPLES), winner] += 4.0 * torch.rand(N_SAMPLES, generator=g)
    return z


# a score computed from half-precision logits is within this of the float32 one
_SCORE_TOL = {torch.float16: 0.02, torch.bfloat16: 0.1}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", scores.available())
def test_half_precision_logits_decide_like_float32(
    dtype: torch.dtype, name: str, reliability: ReliabilityCounts
) -> None:
    z32 = _logits(seed=3)
    z_half = z32.to(dtype)
    s32 = scores.compute(name, z32, num_classes=C, **_kwargs(name)).double()
    s_half = scores.compute(name, z_half, num_classes=C, **_kwargs(name)).double()
    assert bool(torch.isfinite(s_half).all())
    threshold = float(s32.median())  # half the samples on each side: the hard case
    same = (s32 > threshold) == (s_half > threshold)
    assert float(same.double().mean()) >= 0.99, f"{float(same.double().mean()):.4f}"
    # the margin must cover the score error, which scales with the score's size
    tol = _SCORE_TOL[dtype] * max(1.0, float(s32.abs().max()) / 10)
    clear = (s32 - threshold).abs() > tol
    assert int(clear.sum()) > N_SAMPLES // 2
    assert bool(same[clear].all()), "a sample far from the threshold changed side"
    # argmax over the C classes: identical wherever the top two differ by a margin
    cls32, cls_half = z32[:, :C].argmax(1), z_half[:, :C].argmax(1)
    top2 = z32[:, :C].topk(2, dim=1).values
    margin = (top2[:, 0] - top2[:, 1]) > 0.1
    assert float((cls32 == cls_half).double().mean()) >= 0.99
    assert bool((cls32 == cls_half)[margin].all())
    reliability.case()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_model_predicts_like_float32(
    dtype: torch.dtype, reliability: ReliabilityCounts
) -> None:
    """The whole predict() path with the wrapped model cast to half precision."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, C))
    net = RejectHead.wrap(model, k=K).eval()
    x = torch.randn(N_SAMPLES, 16) * 2
    net.calibrate([x[:500]], coverage=0.5)  # a threshold in the thick of the scores
    ref = net.predict(x)
    half = net.to(dtype).predict(x.to(dtype))
    assert half.threshold == ref.threshold, "the threshold stays float64"
    agree = float((half.is_ood == ref.is_ood).double().mean())
    assert agree >= 0.99, agree
    clear = (ref.ood_score.double() - ref.threshold).abs() > 0.05
    assert bool((half.is_ood == ref.is_ood)[clear].all())
    assert float((half.classes == ref.classes).double().mean()) >= 0.99
    reliability.case()
