"""Selective classification: risk-coverage curve, AURC, total misclassification rate.

A classifier with a reject option *accepts* a sample when its OOD score is at or below a
threshold (rejectnet's decision rule is ``is_ood = score > threshold``) and predicts a
class for it. Sweeping the threshold over the observed scores trades coverage (the
fraction accepted) against risk (the error rate among the accepted).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from rejectnet._validation import as_bool_array, as_score_array
from rejectnet.metrics._curve import grouped_counts

__all__ = ["RiskCoverage", "aurc", "risk_coverage", "total_misclassification_rate"]


@dataclass(frozen=True, eq=False)
class RiskCoverage:
    """A risk-coverage curve, one point per distinct score value.

    The arrays are read-only and share one length; thresholds ascend, so coverage
    increases along them and the last point has coverage 1.

    Attributes:
        coverage: Fraction of samples accepted (``score <= thresholds[j]``).
        risk: Fraction of the accepted samples that are misclassified.
        thresholds: The distinct score values, ascending.

    Example:
        >>> rc = risk_coverage([0.3, 0.1, 0.2], [False, True, True])
        >>> rc.thresholds.tolist(), rc.coverage.round(3).tolist(), rc.risk.round(3).tolist()
        ([0.1, 0.2, 0.3], [0.333, 0.667, 1.0], [0.0, 0.0, 0.333])
    """

    coverage: npt.NDArray[np.float64]
    risk: npt.NDArray[np.float64]
    thresholds: npt.NDArray[np.float64]


def _curve(scores: Any, correct: Any) -> RiskCoverage:
    s = as_score_array(scores, "scores")
    ok = as_bool_array(correct, "correct", s.size, "scores")
    g = grouped_counts(s, ~ok, descending=False)
    coverage = g.total / g.n
    risk = g.flagged / g.total
    for arr in (coverage, risk, g.values):
        arr.flags.writeable = False
    return RiskCoverage(coverage=coverage, risk=risk, thresholds=g.values)


def risk_coverage(scores: Any, correct: Any) -> RiskCoverage:
    """Risk-coverage curve of a selective classifier.

    For each distinct score value ``t`` (ascending), the classifier accepts the samples
    with ``score <= t``; coverage is the accepted fraction and risk the fraction of the
    accepted that ``correct`` marks as misclassified.

    Args:
        scores: OOD scores of in-distribution samples, shape ``(N,)``; higher = more
            likely rejected. Tensor, array or list.
        correct: Whether each sample's class prediction is right: booleans or 0/1,
            shape ``(N,)``.

    Returns:
        A :class:`RiskCoverage` with read-only arrays ``coverage``, ``risk`` and
        ``thresholds``, one entry per distinct score.

    Raises:
        TypeError: If an input is not array-like or ``scores`` is not numeric.
        ValueError: If ``scores`` is empty, not 1-D or not finite, or ``correct`` does
            not match it in length or holds values other than 0 and 1.

    Example:
        >>> from rejectnet.metrics import risk_coverage
        >>> rc = risk_coverage([0.1, 0.4, 0.4, 0.9], [True, True, False, False])
        >>> rc.coverage.tolist(), rc.risk.tolist()
        ([0.25, 0.75, 1.0], [0.0, 0.3333333333333333, 0.5])
    """
    return _curve(scores, correct)


def aurc(scores: Any, correct: Any) -> float:
    """Area under the risk-coverage curve (lower is better).

    Computed as ``sum_g (coverage_g - coverage_{g-1}) * risk_g`` over the distinct score
    values ``g`` (ascending, ``coverage_0 = 0``). Without ties this is the usual
    ``mean_k(cumsum(errors)[k] / k)`` over the samples sorted by score.

    Args:
        scores: OOD scores of in-distribution samples, shape ``(N,)``.
        correct: Whether each sample's class prediction is right, shape ``(N,)``.

    Returns:
        The AURC as a float in ``[0, 1]``.

    Raises:
        TypeError: If an input is not array-like or ``scores`` is not numeric.
        ValueError: If ``scores`` is empty, not 1-D or not finite, or ``correct`` does
            not match it in length or holds values other than 0 and 1.

    Example:
        >>> from rejectnet.metrics import aurc
        >>> aurc([0.1, 0.2, 0.3, 0.4], [True, True, False, True])
        0.14583333333333331
    """
    rc = _curve(scores, correct)
    d_cov = np.diff(rc.coverage, prepend=0.0)
    return float(np.dot(d_cov, rc.risk))


def _as_threshold(threshold: Any) -> float:
    bad = isinstance(threshold, (str, bytes, bool, np.bool_)) or (
        isinstance(threshold, (np.ndarray, torch.Tensor)) and threshold.ndim != 0
    )
    value = math.nan
    if not bad:
        try:
            value = float(threshold)
        except (TypeError, ValueError):
            bad = True
    if bad or not math.isfinite(value):
        raise ValueError(
            f"threshold must be a finite real number, got {threshold!r} "
            f"({type(threshold).__name__})"
        )
    return value


def total_misclassification_rate(s_in: Any, correct_in: Any, s_out: Any, threshold: float) -> float:
    """Errors a thresholded classifier makes, per in-distribution sample (paper, Fig. 2).

    A sample is accepted when ``score <= threshold``. The rate is (accepted
    in-distribution samples that are misclassified + accepted OOD samples) divided by
    the number of in-distribution samples; rejected samples count as no error.

    Args:
        s_in: OOD scores of in-distribution samples, shape ``(N_in,)``.
        correct_in: Whether each in-distribution prediction is right, shape ``(N_in,)``.
        s_out: OOD scores of out-of-distribution samples, shape ``(N_out,)``.
        threshold: The decision threshold, a finite real number (or anything
            ``float()`` accepts, such as a 0-d tensor or a calibrated threshold result).

    Returns:
        The total misclassification rate as a float; it exceeds 1 when more OOD samples
        are accepted than there are in-distribution samples.

    Raises:
        TypeError: If an input is not array-like or not numeric.
        ValueError: If an input is empty, not 1-D or not finite, ``correct_in`` does not
            match ``s_in`` or holds values other than 0 and 1, or ``threshold`` is not
            a finite real number.

    Example:
        >>> from rejectnet.metrics import total_misclassification_rate
        >>> total_misclassification_rate(
        ...     [0.1, 0.2, 0.9, 0.3], [True, False, False, True], [0.25, 0.95], threshold=0.5
        ... )
        0.5
    """
    s = as_score_array(s_in, "s_in")
    ok = as_bool_array(correct_in, "correct_in", s.size, "s_in")
    out = as_score_array(s_out, "s_out")
    t = _as_threshold(threshold)
    accepted = s <= t
    errors = int(np.count_nonzero(accepted & ~ok)) + int(np.count_nonzero(out <= t))
    return errors / s.size
