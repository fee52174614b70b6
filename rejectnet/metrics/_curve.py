"""Sorted cumulative counts at distinct score values: the primitive behind every curve.

Every ranking metric in :mod:`rejectnet.metrics` (ROC, precision-recall, risk-coverage)
is a function of two counts taken at each distinct score value ``v``: how many samples
lie at or beyond ``v``, and how many of those carry a flag (OOD, misclassified).
:func:`grouped_counts` computes both with one ``argsort`` and two cumulative sums, so
that ties are grouped exactly the way scikit-learn groups them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["GroupedCounts", "grouped_counts"]


@dataclass(frozen=True, eq=False)
class GroupedCounts:
    """Cumulative counts at each distinct score value, in sweep order.

    Attributes:
        values: The distinct score values, descending when the sweep is descending
            (rule ``score >= v``) and ascending otherwise (rule ``score <= v``).
        total: ``total[j]`` is the number of samples on the selected side of
            ``values[j]`` (``score >= values[j]`` descending, ``<=`` ascending).
        flagged: ``flagged[j]`` is how many of those ``total[j]`` samples are flagged.
        n: The number of samples.
        n_flagged: The number of flagged samples.
    """

    values: npt.NDArray[np.float64]
    total: npt.NDArray[np.int64]
    flagged: npt.NDArray[np.int64]
    n: int
    n_flagged: int


def grouped_counts(
    scores: npt.NDArray[np.float64],
    flags: npt.NDArray[np.bool_],
    *,
    descending: bool,
) -> GroupedCounts:
    """Sort ``scores`` once and count samples and flagged samples per distinct value.

    Args:
        scores: Finite float64 scores of shape ``(N,)``, ``N >= 1`` (already validated).
        flags: Booleans of shape ``(N,)``.
        descending: Sweep from the highest score down (rule ``score >= v``) when true,
            from the lowest up (rule ``score <= v``) otherwise.

    Returns:
        The cumulative counts at every distinct score value, in sweep order.
    """
    order = np.argsort(scores)
    if descending:
        order = order[::-1]
    sorted_scores = scores[order]
    # Last position of each run of equal values: ties form one threshold.
    ends = np.flatnonzero(sorted_scores[1:] != sorted_scores[:-1])
    ends = np.append(ends, sorted_scores.size - 1)
    cum_flagged = np.cumsum(flags[order], dtype=np.int64)
    return GroupedCounts(
        values=sorted_scores[ends],
        total=(ends + 1).astype(np.int64, copy=False),
        flagged=cum_flagged[ends],
        n=int(sorted_scores.size),
        n_flagged=int(cum_flagged[-1]),
    )
