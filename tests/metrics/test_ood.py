"""OOD metrics against scikit-learn and against brute-force definitions."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from rejectnet.metrics import (
    aupr_in,
    aupr_out,
    auroc,
    detection_error,
    fpr_at_tpr,
    ood_metrics,
)

Arr = npt.NDArray[np.float64]
FUNCS: list[Callable[..., Any]] = [
    auroc,
    aupr_in,
    aupr_out,
    fpr_at_tpr,
    detection_error,
    ood_metrics,
]
TOL = 1e-10

# --------------------------------------------------------------------------- strategies

_int_scores = st.lists(st.integers(-3, 3).map(float), min_size=1, max_size=60)
_float_scores = st.lists(
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False), min_size=1, max_size=60
)


@st.composite
def _unbalanced(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    small = draw(st.lists(st.integers(0, 5).map(float), min_size=1, max_size=3))
    big = draw(st.lists(st.integers(0, 5).map(float), min_size=50, max_size=400))
    return (small, big) if draw(st.booleans()) else (big, small)


_pairs = st.one_of(
    st.tuples(_int_scores, _int_scores),
    st.tuples(_float_scores, _float_scores),
    _unbalanced(),
)
_tprs = st.one_of(
    st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0, 1 / 3, 2 / 3]),
    st.floats(1e-9, 1.0, allow_nan=False),
)

# ------------------------------------------------------------------ reference recipes


def _labelled(s_in: Any, s_out: Any) -> tuple[Arr, Arr]:
    y = np.concatenate([np.zeros(len(s_in)), np.ones(len(s_out))])
    s = np.concatenate([np.asarray(s_in, float), np.asarray(s_out, float)])
    return y, s


def _sk_fpr_at_tpr(s_in: Any, s_out: Any, tpr: float) -> float:
    y, s = _labelled(s_in, s_out)
    fpr, tpr_curve, _ = roc_curve(y, s, drop_intermediate=False)
    return float(fpr[np.searchsorted(tpr_curve, tpr, side="left")])


def _brute_rates(s_in: Any, s_out: Any) -> list[tuple[float, float]]:
    """(TPR, FPR) for the rule score >= t at every distinct observed t, plainly."""
    s_in, s_out = np.asarray(s_in, float), np.asarray(s_out, float)
    rates: list[tuple[float, float]] = []
    for t in np.unique(np.concatenate([s_in, s_out])):
        tpr = np.count_nonzero(s_out >= t) / len(s_out)
        fpr = np.count_nonzero(s_in >= t) / len(s_in)
        rates.append((tpr, fpr))
    return rates


def _brute_fpr_at_tpr(s_in: Any, s_out: Any, target: float) -> float:
    return min(fpr for tpr, fpr in _brute_rates(s_in, s_out) if tpr >= target)


def _brute_detection_error(s_in: Any, s_out: Any) -> float:
    errs = [0.5 * (1 - tpr) + 0.5 * fpr for tpr, fpr in _brute_rates(s_in, s_out)]
    return min([0.5, *errs])  # 0.5: flag nothing


def _brute_auroc(s_in: Any, s_out: Any) -> float:
    a, b = np.asarray(s_in, float)[None, :], np.asarray(s_out, float)[:, None]
    return float(np.mean(b > a) + 0.5 * np.mean(b == a))


# ------------------------------------------------------------------ against sklearn


@settings(max_examples=200, deadline=None)
@given(pair=_pairs)
def test_auroc_aupr_match_sklearn(pair: tuple[list[float], list[float]]) -> None:
    s_in, s_out = pair
    y, s = _labelled(s_in, s_out)
    assert math.isclose(auroc(s_in, s_out), roc_auc_score(y, s), rel_tol=0, abs_tol=TOL)
    assert math.isclose(
        aupr_out(s_in, s_out), average_precision_score(y, s), rel_tol=0, abs_tol=TOL
    )
    assert math.isclose(
        aupr_in(s_in, s_out), average_precision_score(1 - y, -s), rel_tol=0, abs_tol=TOL
    )
    assert math.isclose(auroc(s_in, s_out), _brute_auroc(s_in, s_out), rel_tol=0, abs_tol=TOL)


@settings(max_examples=200, deadline=None)
@given(pair=_pairs, tpr=_tprs)
def test_fpr_at_tpr_matches_sklearn_and_brute_force(
    pair: tuple[list[float], list[float]], tpr: float
) -> None:
    s_in, s_out = pair
    got = fpr_at_tpr(s_in, s_out, tpr=tpr)
    assert got == _sk_fpr_at_tpr(s_in, s_out, tpr)
    assert got == _brute_fpr_at_tpr(s_in, s_out, tpr)


@settings(max_examples=200, deadline=None)
@given(pair=_pairs)
def test_detection_error_matches_brute_force(pair: tuple[list[float], list[float]]) -> None:
    s_in, s_out = pair
    assert math.isclose(
        detection_error(s_in, s_out), _brute_detection_error(s_in, s_out), rel_tol=0, abs_tol=TOL
    )


@settings(max_examples=200, deadline=None)
@given(pair=_pairs, tpr=_tprs)
def test_ood_metrics_equals_single_functions(
    pair: tuple[list[float], list[float]], tpr: float
) -> None:
    s_in, s_out = pair
    m = ood_metrics(s_in, s_out, tpr=tpr)
    assert m["auroc"] == auroc(s_in, s_out)
    assert m["aupr_in"] == aupr_in(s_in, s_out)
    assert m["aupr_out"] == aupr_out(s_in, s_out)
    assert m["fpr_at_tpr"] == fpr_at_tpr(s_in, s_out, tpr=tpr)
    assert m["detection_error"] == detection_error(s_in, s_out)
    assert ("fpr95" in m) == (tpr == 0.95)
    assert all(type(v) is float for v in m.values())


def test_large_input_with_ties_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    s_in = np.round(rng.normal(0.0, 1.0, 200_000), 2)
    s_out = np.round(rng.normal(1.0, 1.0, 150_000), 2)
    y, s = _labelled(s_in, s_out)
    m = ood_metrics(s_in, s_out)
    assert math.isclose(m["auroc"], roc_auc_score(y, s), rel_tol=0, abs_tol=TOL)
    assert math.isclose(m["aupr_out"], average_precision_score(y, s), rel_tol=0, abs_tol=TOL)
    assert math.isclose(m["aupr_in"], average_precision_score(1 - y, -s), rel_tol=0, abs_tol=TOL)
    assert m["fpr95"] == _sk_fpr_at_tpr(s_in, s_out, 0.95)


# ------------------------------------------------------------------ known values


def test_perfect_and_inverted_separation() -> None:
    m = ood_metrics([0.0, 0.1, 0.2], [0.8, 0.9])
    assert m == {
        "auroc": 1.0,
        "aupr_in": 1.0,
        "aupr_out": 1.0,
        "fpr_at_tpr": 0.0,
        "detection_error": 0.0,
        "fpr95": 0.0,
    }
    inv = ood_metrics([0.8, 0.9], [0.0, 0.1, 0.2])
    assert inv["auroc"] == 0.0
    assert inv["fpr_at_tpr"] == 1.0
    assert inv["detection_error"] == 0.5


def test_all_tied_scores_are_chance() -> None:
    m = ood_metrics([0.3] * 4, [0.3] * 6, tpr=0.5)
    assert m["auroc"] == 0.5
    assert m["aupr_out"] == 0.6
    assert m["aupr_in"] == 0.4
    assert m["fpr_at_tpr"] == 1.0
    assert m["detection_error"] == 0.5
    assert "fpr95" not in m


def test_fpr_at_tpr_uses_ge_rule_at_ties() -> None:
    # With rule score >= t, t = 0.5 flags both OOD samples and the tied ID sample.
    assert fpr_at_tpr([0.1, 0.5], [0.5, 0.9], tpr=1.0) == 0.5
    assert fpr_at_tpr([0.1, 0.5], [0.5, 0.9], tpr=0.5) == 0.0


# ------------------------------------------------------------------ input handling


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize(
    ("s_in", "s_out", "exc", "match"),
    [
        ([0.1, float("nan")], [0.5], ValueError, "s_in holds 1 NaN"),
        ([0.1], [0.5, float("inf")], ValueError, "s_out holds 1 NaN or infinite"),
        ([0.1], [0.5, -float("inf")], ValueError, "s_out holds"),
        ([], [0.5], ValueError, "s_in is empty"),
        ([0.1], np.array([]), ValueError, "s_out is empty"),
        (np.zeros((2, 2)), [0.5], ValueError, "s_in must be 1-D"),
        ([0.1], torch.zeros(3, 1), ValueError, "s_out must be 1-D"),
        (["a", "b"], [0.5], TypeError, "s_in must hold real numbers"),
        ([0.1], "abc", TypeError, "s_out must be"),
        ([0.1], [True, False], TypeError, "s_out must hold real numbers"),
    ],
)
def test_bad_scores_name_the_argument(
    func: Any, s_in: Any, s_out: Any, exc: type[Exception], match: str
) -> None:
    with pytest.raises(exc, match=match):
        func(s_in, s_out)


@pytest.mark.parametrize("func", [fpr_at_tpr, ood_metrics])
def test_bad_tpr(func: Any) -> None:
    with pytest.raises(ValueError, match=r"write 0\.95, not 95"):
        func([0.1], [0.5], tpr=95)
    with pytest.raises(ValueError, match="tpr must be a fraction"):
        func([0.1], [0.5], tpr=0)
    with pytest.raises(ValueError, match="tpr must be a fraction"):
        func([0.1], [0.5], tpr=-0.5)
    with pytest.raises(ValueError, match="tpr"):
        func([0.1], [0.5], tpr=float("nan"))
    with pytest.raises(TypeError, match="tpr"):
        func([0.1], [0.5], tpr="0.95")


def test_inputs_are_not_modified() -> None:
    rng = np.random.default_rng(1)
    t_in = torch.tensor(rng.normal(size=50), dtype=torch.float32, requires_grad=True)
    a_out = np.round(rng.normal(1.0, size=40), 1)
    a_out_view = a_out[::-1]  # a non-contiguous view
    t_before, a_before = t_in.detach().clone(), a_out.copy()
    for func in FUNCS:
        func(t_in, a_out)
        func(t_in, a_out_view)
        func(a_out, t_in)
    assert torch.equal(t_in.detach(), t_before)
    assert t_in.grad is None
    assert np.array_equal(a_out, a_before)
    assert a_out.flags.writeable


def test_tensor_numpy_and_list_inputs_agree() -> None:
    rng = np.random.default_rng(2)
    t_in = torch.from_numpy(rng.normal(size=300).astype(np.float32))
    t_out = torch.from_numpy(np.round(rng.normal(0.7, size=200), 1).astype(np.float32))
    ref = ood_metrics(t_in, t_out)
    assert ood_metrics(t_in.numpy(), t_out.numpy()) == ref
    assert ood_metrics(t_in.tolist(), t_out.tolist()) == ref
    assert ood_metrics(t_in.double(), t_out.numpy()) == ref
    assert auroc(t_in, t_out) == auroc(t_in.numpy(), t_out.numpy()) == ref["auroc"]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.int64, torch.uint8])
def test_low_precision_and_integer_tensors(dtype: torch.dtype) -> None:
    rng = np.random.default_rng(3)
    t_in = torch.from_numpy(rng.integers(0, 20, size=100)).to(dtype)
    t_out = torch.from_numpy(rng.integers(5, 30, size=80)).to(dtype)
    ref = ood_metrics(t_in.double().numpy(), t_out.double().numpy())
    assert ood_metrics(t_in, t_out) == ref
    assert 0.5 < ref["auroc"] < 1.0


def test_half_precision_ties_come_from_rounding() -> None:
    # float16 rounds 1.0001 to 1.0: the scores tie and the metrics must say chance.
    s_in = torch.tensor([1.0], dtype=torch.float16)
    s_out = torch.tensor([1.0001], dtype=torch.float16)
    assert auroc(s_in, s_out) == 0.5
