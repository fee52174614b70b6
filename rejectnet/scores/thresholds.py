"""Turn OOD scores into decisions: threshold calibration.

The decision rule is the same everywhere: a sample is flagged OOD (rejected) when
``score > threshold`` and accepted when ``score <= threshold``. Every function
returns a :class:`ThresholdResult` carrying the threshold and what it achieves on
the calibration data.

- :func:`threshold_for_coverage` needs in-distribution scores only (the default
  for :meth:`RejectHead.calibrate`).
- :func:`threshold_at_tpr` needs OOD scores too (e.g. training outliers).
- :func:`threshold_for_risk` gives a selective-classification threshold with a
  high-probability bound on the error rate among accepted samples
  (Geifman & El-Yaniv 2017).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.stats import beta as beta_dist

from rejectnet._validation import as_bool_array, as_score_array, check_fraction

__all__ = [
    "ThresholdResult",
    "threshold_at_tpr",
    "threshold_for_coverage",
    "threshold_for_risk",
]

_TOL = 1e-9


@dataclass(frozen=True)
class ThresholdResult:
    """A calibrated threshold and what it achieves on the calibration data.

    ``float(result)`` gives the threshold. Samples with ``score > value`` are OOD.

    Attributes:
        value: The threshold.
        method: ``"coverage"``, ``"tpr"`` or ``"risk"``.
        n_in: The number of in-distribution (calibration) scores used.
        coverage: Fraction of the calibration scores accepted (``score <= value``).
        tpr: Fraction of the OOD scores flagged (``score > value``), when OOD scores
            were given.
        fpr: Fraction of the in-distribution scores flagged (``1 - coverage``), for the
            OOD-detection methods.
        risk: Empirical error rate among the accepted samples (``"risk"`` method).
        risk_bound: Upper confidence bound on that risk, holding with probability
            at least ``1 - delta`` (``"risk"`` method).
        delta: The confidence parameter of ``risk_bound``.

    Example:
        >>> r = threshold_at_tpr([0.1, 0.2, 0.3, 0.6], [0.5, 0.7, 0.8, 0.9], tpr=0.75)
        >>> float(r), r.method, r.coverage, r.risk is None
        (0.6, 'tpr', 1.0, True)
        >>> for part in str(r).split("; "):
        ...     print(part)
        threshold 0.6 (tpr): flag OOD when score > threshold
        coverage 100.00% of 4 in-distribution samples
        TPR 75.00%
        FPR 0.00%
    """

    value: float
    method: str
    n_in: int
    coverage: float
    tpr: float | None = None
    fpr: float | None = None
    risk: float | None = None
    risk_bound: float | None = None
    delta: float | None = None

    def __float__(self) -> float:
        return float(self.value)

    def __str__(self) -> str:
        parts = [
            f"threshold {self.value:.6g} ({self.method}): flag OOD when score > threshold",
            f"coverage {self.coverage:.2%} of {self.n_in} in-distribution samples",
        ]
        if self.tpr is not None:
            parts.append(f"TPR {self.tpr:.2%}")
        if self.fpr is not None:
            parts.append(f"FPR {self.fpr:.2%}")
        if self.risk is not None:
            parts.append(f"risk {self.risk:.2%}")
        if self.risk_bound is not None:
            conf = f" at {1 - self.delta:.2%} confidence" if self.delta is not None else ""
            parts.append(f"risk bound {self.risk_bound:.2%}{conf}")
        return "; ".join(parts)


def _rank(fraction: float, n: int) -> int:
    """Smallest count ``q`` in ``[1, n]`` with ``q >= fraction * n`` (up to float noise)."""
    return min(n, max(1, math.ceil(fraction * n - _TOL)))


def threshold_for_coverage(s_in: Any, coverage: float = 0.95) -> ThresholdResult:
    """Threshold that accepts at least ``coverage`` of the in-distribution scores.

    The threshold is the ``q``-th smallest score with ``q = ceil(coverage * n)``: the
    smallest observed value that accepts at least that fraction. Needs no OOD data.

    Args:
        s_in: In-distribution scores of shape ``(n,)`` (higher = more OOD).
        coverage: Fraction of ``s_in`` to accept, in ``(0, 1]``.

    Returns:
        A :class:`ThresholdResult` with ``coverage`` (achieved, ``>=`` requested
        up to ties) and ``fpr = 1 - coverage``.

    Raises:
        TypeError: If ``s_in`` is not numeric or ``coverage`` not a number.
        ValueError: If ``s_in`` is empty, not 1-D or not finite, or ``coverage`` is
            outside ``(0, 1]``.

    Example:
        >>> r = threshold_for_coverage([0.1, 0.2, 0.3, 0.4, 0.9], coverage=0.8)
        >>> float(r), r.coverage
        (0.4, 0.8)
    """
    s = as_score_array(s_in, "s_in")
    cov = check_fraction(coverage, "coverage")
    n = s.shape[0]
    value = float(np.sort(s)[_rank(cov, n) - 1])
    achieved = float(np.mean(s <= value))
    return ThresholdResult(
        value=value, method="coverage", n_in=n, coverage=achieved, fpr=1.0 - achieved
    )


def _just_below(v: float) -> float:
    """A float strictly below ``v``, also when compared in float32 if ``v`` is a float32."""
    if abs(v) <= float(np.finfo(np.float32).max):  # np.float32(v) would overflow (warning)
        v32 = np.float32(v)
        if float(v32) == v:
            below = float(np.nextafter(v32, np.float32(-np.inf)))
            if np.isfinite(below):
                return below
    with np.errstate(over="ignore"):  # -inf below the lowest float; the caller checks
        return float(np.nextafter(v, -np.inf))


def threshold_at_tpr(s_in: Any, s_out: Any, tpr: float = 0.95) -> ThresholdResult:
    """Threshold that flags at least ``tpr`` of the OOD scores with the lowest FPR.

    With ``m = len(s_out)``, ``q = ceil(tpr * m)`` and ``v`` the ``q``-th largest
    OOD score, the threshold is the largest observed score (from ``s_in`` and
    ``s_out``) strictly below ``v``, or a float just below ``v`` if there is none
    (``np.nextafter``, taken in float32 when ``v`` is a float32 value, so the rule
    also holds for float32 scores). At least ``q`` OOD scores are then above it and
    no threshold with that property flags fewer in-distribution scores.

    Args:
        s_in: In-distribution scores of shape ``(n,)``.
        s_out: OOD scores of shape ``(m,)``, e.g. training outliers (never the OOD
            test set you report on).
        tpr: Fraction of ``s_out`` to flag, in ``(0, 1]``.

    Returns:
        A :class:`ThresholdResult` with the achieved ``tpr``, ``fpr`` and ``coverage``.

    Raises:
        TypeError: If the scores are not numeric or ``tpr`` not a number.
        ValueError: If a score array is empty, not 1-D or not finite, ``tpr`` is
            outside ``(0, 1]``, or the flagged OOD scores sit at the lowest float so that
            no finite threshold lies below them.

    Example:
        >>> r = threshold_at_tpr([0.1, 0.2, 0.3, 0.6], [0.5, 0.7, 0.8, 0.9], tpr=0.75)
        >>> float(r), r.tpr, r.fpr
        (0.6, 0.75, 0.0)
    """
    si = as_score_array(s_in, "s_in")
    so = as_score_array(s_out, "s_out")
    rate = check_fraction(tpr, "tpr")
    q = _rank(rate, so.shape[0])
    v = float(np.sort(so)[::-1][q - 1])
    both = np.concatenate([si, so])
    below = both[both < v]
    value = float(below.max()) if below.size else _just_below(v)
    if not math.isfinite(value):
        raise ValueError(
            f"s_out's flagged scores reach the lowest float ({v!r}), so no finite threshold "
            "lies below them; rescale the scores (every score must be > -1.7e308)"
        )
    achieved_fpr = float(np.mean(si > value))
    return ThresholdResult(
        value=value,
        method="tpr",
        n_in=int(si.shape[0]),
        coverage=1.0 - achieved_fpr,
        tpr=float(np.mean(so > value)),
        fpr=achieved_fpr,
    )


def _risk_bound(errors: int, n: int, delta: float) -> float:
    """One-sided Clopper-Pearson upper bound on the risk from ``errors`` out of ``n``.

    The bound ``b`` solves ``P(Binomial(n, b) <= errors) = delta``.
    """
    if n <= 0 or errors >= n:
        return 1.0
    return float(beta_dist.ppf(1.0 - delta, errors + 1, n - errors))


def _num_tests(n_distinct: int) -> int:
    """Number of bound evaluations of the binary search over ``n_distinct`` thresholds.

    The search runs over ``n_distinct + 1`` options (the extra one rejects everything
    and is never tested), which takes ``ceil(log2(n_distinct + 1))`` tests.
    """
    return max(1, math.ceil(math.log2(n_distinct + 1)))


def threshold_for_risk(
    scores: Any, correct: Any, target_risk: float, delta: float = 0.001
) -> ThresholdResult:
    """Selective-classification threshold with a guaranteed risk (SGR).

    Geifman & El-Yaniv (2017), "Selective classification for deep neural networks",
    Algorithm 1: a binary search over the ``u`` distinct calibration scores, each
    candidate threshold accepting ``score <= threshold``. Each of the at most
    ``K = ceil(log2(u + 1))`` tests bounds the risk (error rate among accepted
    samples) by the one-sided Clopper-Pearson upper bound at confidence
    ``delta' = delta / K``: ``beta.ppf(1 - delta', errors + 1, n_acc - errors)``
    (1 when every accepted sample is wrong). Of the tested thresholds, the one with
    the largest coverage whose bound is ``<= target_risk`` is returned. With
    probability at least ``1 - delta`` over the draw of the calibration set, the
    true risk of the returned threshold is at most ``risk_bound``.

    Args:
        scores: Scores of shape ``(n,)`` on labelled in-distribution calibration
            data (higher = less confident), e.g. an OOD score or ``msp``.
        correct: Booleans (or 0/1) of shape ``(n,)``: whether the classifier's
            prediction on each sample was right.
        target_risk: The acceptable risk, in ``(0, 1)``.
        delta: The allowed failure probability of the bound, in ``(0, 1)``.

    Returns:
        A :class:`ThresholdResult` with ``coverage``, empirical ``risk``,
        ``risk_bound`` and ``delta``.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If the inputs are empty, non-finite or of mismatched lengths,
            ``target_risk`` or ``delta`` is outside ``(0, 1)``, or no tested threshold
            reaches ``target_risk``.

    Example:
        >>> import numpy as np
        >>> s = np.linspace(0.0, 1.0, 2000)
        >>> ok = np.arange(2000) % 100 != 0  # 1% errors, spread over all scores
        >>> r = threshold_for_risk(s, ok, target_risk=0.05, delta=0.01)
        >>> r.coverage, r.risk_bound <= 0.05
        (1.0, True)
    """
    s = as_score_array(scores, "scores")
    ok = as_bool_array(correct, "correct", s.shape[0], "scores")
    target = check_fraction(target_risk, "target_risk", low_open=True, high_open=True)
    conf = check_fraction(delta, "delta", low_open=True, high_open=True)
    n = int(s.shape[0])
    order = np.argsort(s, kind="stable")
    sorted_s = s[order]
    cum_errors: npt.NDArray[np.int64] = np.cumsum(~ok[order], dtype=np.int64)
    values = np.unique(sorted_s)
    # number accepted when thresholding at values[i]: count of scores <= values[i]
    n_acc = np.searchsorted(sorted_s, values, side="right")
    lo, lo_bound, best_bound = _sgr_search(n_acc, cum_errors, target, conf)
    if lo < 0:
        raise ValueError(
            f"target_risk={target} is not achievable with {n} samples at delta={conf}: "
            f"the lowest risk bound found was {best_bound:.4g}; use a larger target_risk, "
            "a larger delta or more calibration data"
        )
    acc = int(n_acc[lo])
    err = int(cum_errors[acc - 1])
    return ThresholdResult(
        value=float(values[lo]),
        method="risk",
        n_in=n,
        coverage=acc / n,
        risk=err / acc,
        risk_bound=lo_bound,
        delta=conf,
    )


def _sgr_search(
    n_acc: npt.NDArray[Any], cum_errors: npt.NDArray[np.int64], target: float, delta: float
) -> tuple[int, float, float]:
    """SGR's binary search over the distinct thresholds (``n_acc[i]`` accepted at the i-th).

    Returns the index of the feasible threshold with the largest coverage (-1: none),
    its risk bound, and the lowest bound found (for the message when none is feasible).
    """
    u = int(n_acc.shape[0])
    n_tests = _num_tests(u)
    delta_test = delta / n_tests
    lo, hi = -1, u - 1  # lo = best feasible index so far (-1: reject everything)
    best_bound = 1.0
    lo_bound = math.inf
    for _ in range(n_tests):
        if lo >= hi:
            break
        mid = (lo + hi + 1) // 2
        acc = int(n_acc[mid])
        err = int(cum_errors[acc - 1])
        bound = _risk_bound(err, acc, delta_test)
        best_bound = min(best_bound, bound)
        if bound <= target:
            lo, lo_bound = mid, bound
        else:
            hi = mid - 1
    return lo, lo_bound, best_bound
