"""Selective-classification metrics against brute-force definitions."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rejectnet.metrics import (
    RiskCoverage,
    aurc,
    risk_coverage,
    total_misclassification_rate,
)

TOL = 1e-12


@st.composite
def _scored(draw: st.DrawFn, min_size: int = 1) -> tuple[list[float], list[bool]]:
    n = draw(st.integers(min_size, 80))
    value = st.one_of(
        st.integers(-3, 3).map(float),
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    )
    scores = draw(st.lists(value, min_size=n, max_size=n))
    correct = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return scores, correct


def _brute_curve(scores: Any, correct: Any) -> tuple[list[float], list[float], list[float]]:
    s, ok = np.asarray(scores, float), np.asarray(correct, bool)
    cov, risk, thr = [], [], []
    for t in sorted(set(s.tolist())):
        accepted = s <= t
        n_acc = int(np.count_nonzero(accepted))
        cov.append(n_acc / len(s))
        risk.append(int(np.count_nonzero(accepted & ~ok)) / n_acc)
        thr.append(t)
    return cov, risk, thr


def _brute_tmr(s_in: Any, correct: Any, s_out: Any, threshold: float) -> float:
    errors = 0
    for s, ok in zip(s_in, correct, strict=True):
        if s <= threshold and not ok:
            errors += 1
    for s in s_out:
        if s <= threshold:
            errors += 1
    return errors / len(s_in)


# ------------------------------------------------------------------ risk-coverage / AURC


@settings(max_examples=200, deadline=None)
@given(data=_scored())
def test_risk_coverage_matches_brute_force(data: tuple[list[float], list[bool]]) -> None:
    scores, correct = data
    rc = risk_coverage(scores, correct)
    cov, risk, thr = _brute_curve(scores, correct)
    assert rc.thresholds.tolist() == thr
    assert rc.coverage.tolist() == cov
    assert rc.risk.tolist() == risk
    assert rc.coverage[-1] == 1.0


@settings(max_examples=200, deadline=None)
@given(data=_scored())
def test_aurc_matches_brute_force(data: tuple[list[float], list[bool]]) -> None:
    scores, correct = data
    cov, risk, _ = _brute_curve(scores, correct)
    area, prev = 0.0, 0.0
    for c, r in zip(cov, risk, strict=True):
        area += (c - prev) * r
        prev = c
    got = aurc(scores, correct)
    assert type(got) is float
    assert math.isclose(got, area, rel_tol=0, abs_tol=TOL)


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 80),
    seed=st.integers(0, 2**32 - 1),
)
def test_aurc_without_ties_is_mean_of_cumulative_risk(n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n).astype(float)  # distinct
    correct = rng.random(n) < 0.7
    errors = ~correct[np.argsort(scores)]
    expected = float(np.mean(np.cumsum(errors) / np.arange(1, n + 1)))
    assert math.isclose(aurc(scores, correct), expected, rel_tol=0, abs_tol=TOL)


def test_aurc_known_values() -> None:
    assert aurc([0.1, 0.2, 0.3], [True, True, True]) == 0.0
    assert aurc([0.1, 0.2, 0.3], [False, False, False]) == 1.0
    # All tied: one point, coverage 1, risk 1/2.
    assert aurc([0.5] * 4, [True, False, True, False]) == 0.5
    # Error on the most confident sample is worse than on the least confident one.
    assert aurc([0.1, 0.9], [False, True]) > aurc([0.1, 0.9], [True, False])


def test_risk_coverage_result_is_frozen_and_read_only() -> None:
    rc = risk_coverage([0.3, 0.1, 0.3], [1, 0, 1])
    assert isinstance(rc, RiskCoverage)
    assert rc.thresholds.tolist() == [0.1, 0.3]
    assert rc.coverage.tolist() == [1 / 3, 1.0]
    assert rc.risk.tolist() == [1.0, 1 / 3]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rc.risk = np.zeros(2)  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        rc.risk[0] = 0.0


# ------------------------------------------------------------------ total misclassification


@settings(max_examples=200, deadline=None)
@given(
    data=_scored(),
    s_out=st.lists(st.integers(-4, 4).map(float), min_size=1, max_size=40),
    threshold=st.one_of(
        st.integers(-4, 4).map(float), st.floats(-10, 10, allow_nan=False, allow_infinity=False)
    ),
)
def test_tmr_matches_brute_force(
    data: tuple[list[float], list[bool]], s_out: list[float], threshold: float
) -> None:
    scores, correct = data
    got = total_misclassification_rate(scores, correct, s_out, threshold)
    assert type(got) is float
    assert got == _brute_tmr(scores, correct, s_out, threshold)


def test_tmr_known_values_and_boundary() -> None:
    s_in, correct, s_out = [0.1, 0.2, 0.9], [True, False, True], [0.2, 0.95]
    # Accept score <= threshold: at 0.2 the tied OOD sample and the wrong ID one count.
    assert total_misclassification_rate(s_in, correct, s_out, 0.2) == 2 / 3
    assert total_misclassification_rate(s_in, correct, s_out, 0.19) == 0.0
    assert total_misclassification_rate(s_in, correct, s_out, 10) == 3 / 3
    assert total_misclassification_rate(s_in, correct, s_out, -10) == 0.0


class _Threshold:
    def __float__(self) -> float:
        return 0.2


@pytest.mark.parametrize(
    "threshold", [0.2, 0, np.float32(0.2), np.float64(0.2), torch.tensor(0.2), _Threshold()]
)
def test_tmr_accepts_real_thresholds(threshold: Any) -> None:
    got = total_misclassification_rate([0.1, 0.3], [False, True], [0.15], threshold)
    assert got == (1.0 if float(threshold) >= 0.15 else 0.0)


@pytest.mark.parametrize(
    "threshold",
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        "0.5",
        None,
        True,
        [0.5],
        np.array([0.5, 0.6]),
        torch.tensor([0.5]),
        1e400,
    ],
)
def test_tmr_rejects_bad_thresholds(threshold: Any) -> None:
    with pytest.raises(ValueError, match="threshold must be a finite real number"):
        total_misclassification_rate([0.1, 0.3], [False, True], [0.15], threshold)


# ------------------------------------------------------------------ input handling


@pytest.mark.parametrize("func", [risk_coverage, aurc])
def test_bad_inputs(func: Any) -> None:
    with pytest.raises(ValueError, match="correct must be 1-D with the same length as scores"):
        func([0.1, 0.2, 0.3], [True, False])
    with pytest.raises(ValueError, match="correct must hold booleans or 0/1"):
        func([0.1, 0.2], [0.5, 1.0])
    with pytest.raises(ValueError, match="scores holds 1 NaN"):
        func([0.1, float("nan")], [True, False])
    with pytest.raises(ValueError, match="scores holds 1 NaN or infinite"):
        func([0.1, float("inf")], [True, False])
    with pytest.raises(ValueError, match="scores is empty"):
        func([], [])
    with pytest.raises(ValueError, match="scores must be 1-D"):
        func(np.zeros((2, 1)), [True, False])
    with pytest.raises(TypeError, match="scores must hold real numbers"):
        func(["a", "b"], [True, False])


def test_tmr_bad_inputs() -> None:
    with pytest.raises(ValueError, match="correct_in must be 1-D with the same length as s_in"):
        total_misclassification_rate([0.1, 0.2], [True], [0.3], 0.5)
    with pytest.raises(ValueError, match="s_out holds"):
        total_misclassification_rate([0.1], [True], [float("nan")], 0.5)
    with pytest.raises(ValueError, match="s_out is empty"):
        total_misclassification_rate([0.1], [True], [], 0.5)
    with pytest.raises(ValueError, match="s_in is empty"):
        total_misclassification_rate([], [], [0.2], 0.5)


def test_tensor_numpy_list_agree_and_inputs_unchanged() -> None:
    rng = np.random.default_rng(4)
    t_scores = torch.from_numpy(np.round(rng.random(200), 1).astype(np.float32))
    t_correct = torch.from_numpy(rng.random(200) < 0.8)
    t_out = torch.from_numpy(np.round(rng.random(50) + 0.5, 1).astype(np.float32))
    before = (t_scores.clone(), t_correct.clone(), t_out.clone())
    a_scores, a_correct = t_scores.numpy().copy(), t_correct.numpy().copy()

    rc_t, rc_a = risk_coverage(t_scores, t_correct), risk_coverage(a_scores, a_correct)
    for field in ("coverage", "risk", "thresholds"):
        assert np.array_equal(getattr(rc_t, field), getattr(rc_a, field))
    assert aurc(t_scores, t_correct) == aurc(a_scores, a_correct.astype(int).tolist())
    assert aurc(t_scores, t_correct.long()) == aurc(a_scores, a_correct)
    tmr_t = total_misclassification_rate(t_scores, t_correct, t_out, 0.7)
    assert tmr_t == total_misclassification_rate(a_scores, a_correct, t_out.numpy(), 0.7)

    for t, b in zip((t_scores, t_correct, t_out), before, strict=True):
        assert torch.equal(t, b)
    assert np.array_equal(a_scores, before[0].numpy())
    assert np.array_equal(a_correct, before[1].numpy())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_scores(dtype: torch.dtype) -> None:
    scores = torch.tensor([0.1, 0.5, 0.5, 0.9], dtype=dtype)
    correct = torch.tensor([True, True, False, False])
    expected = aurc(scores.double().numpy(), correct.numpy())
    assert aurc(scores, correct) == expected
    assert risk_coverage(scores, correct).coverage.tolist() == [0.25, 0.75, 1.0]
