"""Out-of-distribution detection metrics: AUROC, AUPR, FPR at a TPR, detection error.

Conventions shared by every function here:

* ``s_in`` holds the scores of in-distribution samples (the negatives) and ``s_out``
  those of out-of-distribution samples (the positives); a higher score means "more OOD".
* A sample is flagged OOD at threshold ``t`` when ``score >= t`` (scikit-learn's
  ``roc_curve`` rule); thresholds run over the distinct observed values, ties grouped.
* Results are python floats holding fractions (``0.95``), never percentages.

:func:`ood_metrics` computes everything from a single sort and is the fast path for
large evaluations; the single-metric functions give identical numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from rejectnet._validation import as_score_array, check_fraction
from rejectnet.metrics._curve import grouped_counts

__all__ = [
    "aupr_in",
    "aupr_out",
    "auroc",
    "detection_error",
    "fpr_at_tpr",
    "ood_metrics",
]


@dataclass(frozen=True, eq=False)
class _Roc:
    """Counts at each distinct score, highest first (rule ``score >= value``)."""

    tp: npt.NDArray[np.int64]  # OOD samples flagged
    fp: npt.NDArray[np.int64]  # in-distribution samples flagged
    n_pos: int  # len(s_out)
    n_neg: int  # len(s_in)


def _roc(s_in: Any, s_out: Any) -> _Roc:
    neg = as_score_array(s_in, "s_in")
    pos = as_score_array(s_out, "s_out")
    scores = np.concatenate((neg, pos))
    is_out = np.zeros(scores.size, dtype=np.bool_)
    is_out[neg.size :] = True
    g = grouped_counts(scores, is_out, descending=True)
    return _Roc(tp=g.flagged, fp=g.total - g.flagged, n_pos=pos.size, n_neg=neg.size)


def _prev(x: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``x`` shifted right by one, with a leading 0."""
    out = np.empty_like(x)
    out[0] = 0
    out[1:] = x[:-1]
    return out


def _auroc(r: _Roc) -> float:
    # Exact trapezoid in integers: sum over groups of dFP * (TP_prev + TP) / 2.
    tp_prev = _prev(r.tp)
    d_fp = r.fp - _prev(r.fp)
    twice_area = int(np.dot(d_fp, tp_prev + r.tp))
    return twice_area / (2 * r.n_pos * r.n_neg)


def _aupr_out(r: _Roc) -> float:
    # Average precision with OOD positive: sum_k (R_k - R_{k-1}) P_k, highest score first.
    d_tp = r.tp - _prev(r.tp)
    precision = r.tp / (r.tp + r.fp)
    return float(np.dot(d_tp, precision)) / r.n_pos


def _aupr_in(r: _Roc) -> float:
    # Average precision with in-distribution positive and score -s, i.e. the rule
    # score <= v. Samples with score <= values[j] are everything except those with
    # score >= values[j-1], so the counts come from the same arrays shifted by one.
    fp_prev = _prev(r.fp)
    d_fp = r.fp - fp_prev
    in_le = r.n_neg - fp_prev
    out_le = r.n_pos - _prev(r.tp)
    mask = d_fp > 0  # groups holding in-distribution samples (in_le > 0 there)
    precision = in_le[mask] / (in_le[mask] + out_le[mask])
    return float(np.dot(d_fp[mask], precision)) / r.n_neg


def _fpr_at_tpr(r: _Roc, tpr: float) -> float:
    tpr_curve = r.tp / r.n_pos
    # tpr_curve is non-decreasing and ends at 1.0 >= tpr, so idx is in range.
    idx = int(np.searchsorted(tpr_curve, tpr, side="left"))
    return float(r.fp[idx] / r.n_neg)


def _detection_error(r: _Roc) -> float:
    err = 0.5 * (1.0 - r.tp / r.n_pos) + 0.5 * (r.fp / r.n_neg)
    # "Flag nothing" (TPR = FPR = 0) costs 0.5, as does "flag everything" (the lowest
    # threshold, always in err), so the explicit 0.5 only documents the definition.
    return min(0.5, float(err.min()))


def auroc(s_in: Any, s_out: Any) -> float:
    """Area under the ROC curve, OOD as the positive class.

    Equals scikit-learn's ``roc_auc_score(labels, scores)`` with label 1 for the OOD
    samples, and the probability that a random OOD sample scores higher than a random
    in-distribution one (ties counting one half). It is computed exactly from integer
    counts.

    Args:
        s_in: In-distribution scores, shape ``(N_in,)``: tensor, array or list.
        s_out: Out-of-distribution scores, shape ``(N_out,)``.

    Returns:
        The AUROC as a float in ``[0, 1]``; 0.5 is chance.

    Raises:
        TypeError: If an input is not array-like or not numeric.
        ValueError: If an input is empty, not 1-D, or holds NaN or inf.

    Example:
        >>> from rejectnet.metrics import auroc
        >>> auroc([0.1, 0.2], [0.3, 0.9])
        1.0
        >>> auroc([0.1, 0.5], [0.5, 0.9])
        0.875
    """
    return _auroc(_roc(s_in, s_out))


def aupr_out(s_in: Any, s_out: Any) -> float:
    """Area under the precision-recall curve with OOD as the positive class.

    Computed as average precision, ``sum_k (R_k - R_{k-1}) * P_k`` over thresholds from
    the highest score down; equals scikit-learn's
    ``average_precision_score(labels, scores)`` with label 1 for OOD samples.

    Args:
        s_in: In-distribution scores, shape ``(N_in,)``: tensor, array or list.
        s_out: Out-of-distribution scores, shape ``(N_out,)``.

    Returns:
        The AUPR-Out as a float in ``(0, 1]``.

    Raises:
        TypeError: If an input is not array-like or not numeric.
        ValueError: If an input is empty, not 1-D, or holds NaN or inf.

    Example:
        >>> from rejectnet.metrics import aupr_out
        >>> aupr_out([0.1, 0.2], [0.3, 0.9])
        1.0
        >>> aupr_out([0.1, 0.9], [0.3, 0.5])
        0.5833333333333333
    """
    return _aupr_out(_roc(s_in, s_out))


def aupr_in(s_in: Any, s_out: Any) -> float:
    """Area under the precision-recall curve with in-distribution as the positive class.

    The in-distribution samples are the positives and ``-score`` ranks them; equals
    scikit-learn's ``average_precision_score(labels_id, -scores)`` with label 1 for
    in-distribution samples.

    Args:
        s_in: In-distribution scores, shape ``(N_in,)``: tensor, array or list.
        s_out: Out-of-distribution scores, shape ``(N_out,)``.

    Returns:
        The AUPR-In as a float in ``(0, 1]``.

    Raises:
        TypeError: If an input is not array-like or not numeric.
        ValueError: If an input is empty, not 1-D, or holds NaN or inf.

    Example:
        >>> from rejectnet.metrics import aupr_in
        >>> aupr_in([0.1, 0.2], [0.3, 0.9])
        1.0
    """
    return _aupr_in(_roc(s_in, s_out))


def fpr_at_tpr(s_in: Any, s_out: Any, tpr: float = 0.95) -> float:
    """False-positive rate at the first threshold reaching a true-positive rate.

    Over thresholds ``t`` at the observed score values (rule ``score >= t``), returns the
    smallest FPR (fraction of in-distribution samples flagged) among those whose TPR
    (fraction of OOD samples flagged) is at least ``tpr``. This is
    ``fpr[np.searchsorted(tpr_curve, tpr, side="left")]`` on scikit-learn's
    ``roc_curve(..., drop_intermediate=False)``. With ``tpr=0.95`` it is the paper's
    FPR at 95% TPR.

    Args:
        s_in: In-distribution scores, shape ``(N_in,)``: tensor, array or list.
        s_out: Out-of-distribution scores, shape ``(N_out,)``.
        tpr: Target true-positive rate, a fraction in ``(0, 1]``.

    Returns:
        The FPR as a float in ``[0, 1]``.

    Raises:
        TypeError: If an input is not array-like or not numeric, or ``tpr`` is not a number.
        ValueError: If an input is empty, not 1-D, or holds NaN or inf, or ``tpr`` is not
            in ``(0, 1]`` (write 0.95, not 95).

    Example:
        >>> from rejectnet.metrics import fpr_at_tpr
        >>> fpr_at_tpr([0.1, 0.2, 0.3, 0.4], [0.35, 0.9], tpr=1.0)
        0.25
        >>> fpr_at_tpr([0.1, 0.2, 0.3, 0.4], [0.35, 0.9], tpr=0.5)
        0.0
    """
    target = check_fraction(tpr, "tpr")
    return _fpr_at_tpr(_roc(s_in, s_out), target)


def detection_error(s_in: Any, s_out: Any) -> float:
    """Minimum detection error, ``min_t 0.5 * (1 - TPR(t)) + 0.5 * FPR(t)``.

    The minimum runs over thresholds at the observed score values (rule ``score >= t``)
    and over "flag nothing", whose error is 0.5. It is the misclassification rate of the
    best threshold when in- and out-of-distribution samples are equally likely.

    Args:
        s_in: In-distribution scores, shape ``(N_in,)``: tensor, array or list.
        s_out: Out-of-distribution scores, shape ``(N_out,)``.

    Returns:
        The detection error as a float in ``[0, 0.5]``.

    Raises:
        TypeError: If an input is not array-like or not numeric.
        ValueError: If an input is empty, not 1-D, or holds NaN or inf.

    Example:
        >>> from rejectnet.metrics import detection_error
        >>> detection_error([0.1, 0.2], [0.3, 0.9])
        0.0
        >>> detection_error([0.1, 0.5], [0.4, 0.9])
        0.25
    """
    return _detection_error(_roc(s_in, s_out))


def ood_metrics(s_in: Any, s_out: Any, tpr: float = 0.95) -> dict[str, float]:
    """Every OOD detection metric at once, from a single sort of the scores.

    Args:
        s_in: In-distribution scores, shape ``(N_in,)``: tensor, array or list.
        s_out: Out-of-distribution scores, shape ``(N_out,)``.
        tpr: Target true-positive rate for ``"fpr_at_tpr"``, a fraction in ``(0, 1]``.

    Returns:
        A dict with keys ``"auroc"``, ``"aupr_in"``, ``"aupr_out"``, ``"fpr_at_tpr"``
        and ``"detection_error"`` (floats, fractions), equal to the single-metric
        functions. When ``tpr == 0.95`` it also holds ``"fpr95"``, an alias of
        ``"fpr_at_tpr"``.

    Raises:
        TypeError: If an input is not array-like or not numeric, or ``tpr`` is not a number.
        ValueError: If an input is empty, not 1-D, or holds NaN or inf, or ``tpr`` is not
            in ``(0, 1]``.

    Example:
        >>> from rejectnet.metrics import ood_metrics
        >>> m = ood_metrics([0.1, 0.2, 0.3], [0.25, 0.8, 0.9])
        >>> round(m["auroc"], 4), m["fpr95"], m["detection_error"]
        (0.8889, 0.3333333333333333, 0.16666666666666666)
    """
    target = check_fraction(tpr, "tpr")
    r = _roc(s_in, s_out)
    out = {
        "auroc": _auroc(r),
        "aupr_in": _aupr_in(r),
        "aupr_out": _aupr_out(r),
        "fpr_at_tpr": _fpr_at_tpr(r, target),
        "detection_error": _detection_error(r),
    }
    if target == 0.95:
        out["fpr95"] = out["fpr_at_tpr"]
    return out
