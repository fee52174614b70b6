"""Threshold calibration: coverage, TPR and guaranteed-risk thresholds."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import binom

from rejectnet.scores import (
    ThresholdResult,
    threshold_at_tpr,
    threshold_for_coverage,
    threshold_for_risk,
)
from rejectnet.scores.thresholds import _num_tests, _risk_bound

# scores with many ties (small integers) mixed with arbitrary floats
score = st.one_of(
    st.integers(-5, 5).map(float),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)
scores = st.lists(score, min_size=1, max_size=40)
fractions = st.one_of(
    st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0, 0.1, 0.7, 0.3]),
    st.floats(1e-6, 1.0, exclude_min=False),
)


# ---------------------------------------------------------------- coverage


@settings(max_examples=200, deadline=None)
@given(s=scores, cov=fractions)
def test_coverage_property(s: list[float], cov: float) -> None:
    arr = np.array(s)
    n = len(arr)
    r = threshold_for_coverage(arr, coverage=cov)
    assert r.value in arr
    assert np.mean(arr <= r.value) == pytest.approx(r.coverage)
    assert np.count_nonzero(arr <= r.value) >= cov * n - 1e-9
    smaller = arr[arr < r.value]
    if smaller.size:
        assert np.count_nonzero(arr <= smaller.max()) < cov * n
    # brute force: the smallest observed value that reaches the coverage
    ok = [t for t in arr if np.count_nonzero(arr <= t) >= cov * n - 1e-9]
    assert r.value == min(ok)
    assert r.fpr == pytest.approx(1.0 - r.coverage)
    assert r.method == "coverage" and r.n_in == n and r.tpr is None


def test_coverage_float_rounding() -> None:
    # 0.07 * 100 = 7.000000000000001 in floating point; must still pick the 7th value
    s = np.arange(1.0, 101.0)
    assert 0.07 * 100 > 7 and 0.14 * 100 > 14
    r = threshold_for_coverage(s, 0.07)
    assert r.value == 7.0 and r.coverage == 0.07
    assert threshold_for_coverage(s, 0.14).value == 14.0
    assert threshold_for_coverage(s, 0.95).value == 95.0
    assert threshold_for_coverage(s, 1.0).value == 100.0
    assert threshold_for_coverage(s, 1e-9).value == 1.0


def test_coverage_input_types_and_unchanged() -> None:
    t = torch.tensor([0.3, 0.1, 0.2, 0.4], dtype=torch.float16)
    before = t.clone()
    r = threshold_for_coverage(t, 0.5)
    assert r.value == pytest.approx(0.2, abs=1e-3)
    torch.testing.assert_close(t, before, rtol=0, atol=0)
    assert threshold_for_coverage([3, 1, 2], 0.5).value == 2.0
    a = np.array([3.0, 1.0, 2.0])
    threshold_for_coverage(a, 0.5)
    np.testing.assert_array_equal(a, [3.0, 1.0, 2.0])


# ---------------------------------------------------------------- tpr


@settings(max_examples=200, deadline=None)
@given(s_in=scores, s_out=scores, rate=fractions)
def test_tpr_property(s_in: list[float], s_out: list[float], rate: float) -> None:
    si, so = np.array(s_in), np.array(s_out)
    m = len(so)
    r = threshold_at_tpr(si, so, tpr=rate)
    assert np.isfinite(r.value)
    assert np.count_nonzero(so > r.value) >= rate * m - 1e-9
    assert r.tpr == pytest.approx(np.mean(so > r.value))
    assert r.fpr == pytest.approx(np.mean(si > r.value))
    assert r.coverage == pytest.approx(1.0 - r.fpr)
    # brute force over all observed thresholds (and one below everything), ties included
    both = np.concatenate([si, so])
    candidates = np.append(both, np.nextafter(both.min(), -np.inf))
    feasible = [t for t in candidates if np.count_nonzero(so > t) >= rate * m - 1e-9]
    best_fpr = min(np.mean(si > t) for t in feasible)
    assert r.fpr == pytest.approx(best_fpr)
    # it is an observed score, or lies below every observed score
    assert r.value in both or r.value < both.min()
    assert r.method == "tpr" and r.n_in == len(si)


def test_tpr_examples() -> None:
    r = threshold_at_tpr([0.1, 0.2, 0.3], [0.25, 0.5, 0.6, 0.9], tpr=0.75)
    assert r.value == 0.3 and r.tpr == 0.75 and r.fpr == 0.0 and r.coverage == 1.0
    # the q-th largest OOD score is the minimum of everything: go just below it
    r = threshold_at_tpr([1.0, 2.0], [0.5, 3.0], tpr=1.0)
    assert r.value < 0.5 and r.tpr == 1.0 and r.fpr == 1.0
    # ...and the threshold still lies below it when compared in float32
    r = threshold_at_tpr(torch.tensor([2.0]), torch.tensor([0.1, 3.0]), tpr=1.0)
    assert bool(torch.tensor([0.1]) > r.value)
    # ties between in and out scores at the cut
    # float rounding: 0.07 * 100 > 7, but 7 of 100 OOD scores must be enough
    r = threshold_at_tpr([0.0], np.arange(1.0, 101.0), tpr=0.07)
    assert r.value == 93.0 and r.tpr == 0.07
    r = threshold_at_tpr([1.0, 1.0, 2.0], [1.0, 2.0, 3.0], tpr=2 / 3)
    assert r.value == 1.0 and r.tpr == pytest.approx(2 / 3) and r.fpr == pytest.approx(1 / 3)


# ---------------------------------------------------------------- risk


def _synthetic_selective(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform scores; P(error | s) = s / 2, so low scores are mostly correct."""
    rng = np.random.default_rng(seed)
    s = rng.uniform(0.0, 1.0, n)
    correct = rng.uniform(0.0, 1.0, n) >= s / 2
    return s, correct


def test_risk_on_synthetic_data() -> None:
    s, correct = _synthetic_selective(5000, seed=0)
    target, delta = 0.1, 0.01
    r = threshold_for_risk(s, correct, target_risk=target, delta=delta)
    assert r.method == "risk" and r.delta == delta and r.n_in == 5000
    assert r.risk_bound is not None and r.risk is not None
    assert r.risk_bound <= target
    assert r.risk <= r.risk_bound
    accepted = s <= r.value
    n_acc = int(accepted.sum())
    errors = int((~correct[accepted]).sum())
    assert r.coverage == n_acc / 5000 and r.risk == errors / n_acc
    assert 0.2 < r.coverage < 0.4  # true risk t/4 = 0.1 at t = 0.4; the bound costs some
    # the bound is the Clopper-Pearson upper limit: P(Bin(n_acc, bound) <= errors) = delta'
    delta_test = delta / _num_tests(len(np.unique(s)))
    assert binom.cdf(errors, n_acc, r.risk_bound) == pytest.approx(delta_test, rel=1e-6)


@pytest.mark.parametrize(("errors", "n"), [(0, 1), (0, 50), (3, 50), (49, 50), (10, 1000)])
@pytest.mark.parametrize("delta", [0.5, 0.01, 1e-4])
def test_risk_bound_matches_binomial(errors: int, n: int, delta: float) -> None:
    b = _risk_bound(errors, n, delta)
    expected = brentq(lambda p: binom.cdf(errors, n, p) - delta, 1e-15, 1 - 1e-15, xtol=1e-14)
    assert b == pytest.approx(expected, rel=1e-7, abs=1e-12)
    assert binom.cdf(errors, n, b) == pytest.approx(delta, rel=1e-6)
    assert errors / n <= b <= 1.0


def test_risk_bound_all_wrong() -> None:
    assert _risk_bound(5, 5, 0.01) == 1.0


def test_risk_guarantee_holds_over_draws() -> None:
    # true risk of threshold t under P(error | s) = s / 2 with s ~ U(0, 1) is t / 4
    delta = 0.1
    violations = found = 0
    for seed in range(150):
        s, correct = _synthetic_selective(400, seed=1000 + seed)
        try:
            r = threshold_for_risk(s, correct, target_risk=0.2, delta=delta)
        except ValueError:  # an unlucky calibration set: no threshold, no violation
            continue
        found += 1
        assert r.risk_bound is not None and r.risk_bound <= 0.2
        true_risk = min(r.value, 1.0) / 4
        violations += true_risk > r.risk_bound
    assert found >= 140
    assert violations / 150 <= delta


def test_risk_all_correct_full_coverage() -> None:
    s = np.linspace(0, 1, 3000)
    r = threshold_for_risk(s, np.ones(3000, dtype=bool), target_risk=0.01, delta=0.01)
    assert r.coverage == 1.0 and r.risk == 0.0 and r.value == 1.0
    assert r.risk_bound == pytest.approx(1 - (0.01 / _num_tests(3000)) ** (1 / 3000))


def test_risk_ties_and_tensor_input() -> None:
    s = torch.tensor([0.0] * 500 + [1.0] * 500)
    correct = torch.tensor([True] * 500 + [False] * 500)
    r = threshold_for_risk(s, correct, target_risk=0.05, delta=0.05)
    assert r.value == 0.0 and r.coverage == 0.5 and r.risk == 0.0
    r01 = threshold_for_risk(s.numpy(), correct.int().numpy(), target_risk=0.05, delta=0.05)
    assert r01 == r


def test_risk_unreachable_target() -> None:
    s, correct = _synthetic_selective(100, seed=1)
    with pytest.raises(ValueError, match=r"target_risk=0.01 is not achievable with 100 samples"):
        threshold_for_risk(s, correct, target_risk=0.01)
    with pytest.raises(ValueError, match=r"larger target_risk, a larger delta or more"):
        threshold_for_risk(np.arange(10.0), np.zeros(10, dtype=bool), target_risk=0.5)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"target_risk": 0.0}, ValueError, "target_risk"),
        ({"target_risk": 1.0}, ValueError, "target_risk"),
        ({"target_risk": 5}, ValueError, "target_risk.*write 0.95"),
        ({"target_risk": 0.1, "delta": 0.0}, ValueError, "delta"),
        ({"target_risk": 0.1, "delta": 1.0}, ValueError, "delta"),
        ({"target_risk": "0.1"}, TypeError, "target_risk"),
    ],
)
def test_risk_bad_fractions(kwargs: dict[str, object], exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        threshold_for_risk(np.arange(5.0), np.ones(5, dtype=bool), **kwargs)  # type: ignore[arg-type]


def test_risk_bad_inputs() -> None:
    ok = np.ones(3, dtype=bool)
    with pytest.raises(ValueError, match=r"scores.*NaN"):
        threshold_for_risk([0.1, np.nan, 0.3], ok, 0.1)
    with pytest.raises(ValueError, match=r"scores is empty"):
        threshold_for_risk([], [], 0.1)
    with pytest.raises(ValueError, match=r"correct.*same length as scores"):
        threshold_for_risk([0.1, 0.2, 0.3], [True, False], 0.1)
    with pytest.raises(ValueError, match=r"correct.*0/1"):
        threshold_for_risk([0.1, 0.2, 0.3], [0, 2, 1], 0.1)


# ---------------------------------------------------------------- shared validation


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: threshold_for_coverage([0.1, np.nan]), ValueError, "s_in.*NaN"),
        (lambda: threshold_for_coverage([0.1, np.inf]), ValueError, "s_in.*infinite"),
        (lambda: threshold_for_coverage([]), ValueError, "s_in is empty"),
        (lambda: threshold_for_coverage([[0.1, 0.2]]), ValueError, "s_in must be 1-D"),
        (lambda: threshold_for_coverage([0.1], 95), ValueError, "coverage.*write 0.95"),
        (lambda: threshold_for_coverage([0.1], 0), ValueError, "coverage"),
        (lambda: threshold_for_coverage([0.1], -0.5), ValueError, "coverage"),
        (lambda: threshold_for_coverage([0.1], float("nan")), ValueError, "coverage"),
        (lambda: threshold_for_coverage("abc"), TypeError, "s_in"),
        (lambda: threshold_at_tpr([0.1], [np.nan]), ValueError, "s_out.*NaN"),
        (lambda: threshold_at_tpr([np.nan], [0.1]), ValueError, "s_in.*NaN"),
        (lambda: threshold_at_tpr([0.1], []), ValueError, "s_out is empty"),
        (lambda: threshold_at_tpr([], [0.1]), ValueError, "s_in is empty"),
        (lambda: threshold_at_tpr([0.1], [0.2], tpr=95), ValueError, "tpr.*write 0.95"),
        (lambda: threshold_at_tpr([0.1], [0.2], tpr=0.0), ValueError, "tpr"),
    ],
)
def test_bad_inputs_name_the_argument(call, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------- result object


def test_threshold_result() -> None:
    r = threshold_at_tpr([0.1, 0.2, 0.3, 0.6], [0.5, 0.7, 0.8, 0.9], tpr=0.75)
    assert float(r) == r.value == 0.6
    assert math.isclose(torch.tensor(float(r)).item(), 0.6, rel_tol=1e-6)
    text = str(r)
    assert "75.00%" in text and "0.00%" in text and "100.00%" in text and "0.6" in text
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.value = 1.0  # type: ignore[misc]
    s, correct = _synthetic_selective(3000, seed=3)
    rr = threshold_for_risk(s, correct, 0.1, delta=0.001)
    text = str(rr)
    assert "risk bound" in text and "99.90% confidence" in text and "%" in text
    plain = ThresholdResult(value=1.5, method="coverage", n_in=10, coverage=0.9)
    assert "90.00%" in str(plain) and "TPR" not in str(plain)
