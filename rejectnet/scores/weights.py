"""Greedy fitting of reject-unit weights for :func:`rejectnet.scores.weighted_reject`.

Mohseni et al. (AAAI 2020, Table 2) weight the softmax probabilities of the reject
units, found by a greedy search, instead of summing them. This module implements
that search as deterministic coordinate ascent on the AUROC.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from sklearn.metrics import roc_auc_score

from rejectnet._validation import as_logits, check_int, check_num_classes

__all__ = ["fit_reject_weights"]

_DEFAULT_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 2.0, 4.0)
_IMPROVEMENT_TOL = 1e-12


def _reject_probs(z: torch.Tensor, num_classes: int) -> npt.NDArray[np.float64]:
    """Return the reject-unit probabilities ``p_R`` (softmax over all outputs) in float64."""
    log_p = torch.log_softmax(z.to(torch.float64), dim=1)
    out: npt.NDArray[np.float64] = log_p[:, num_classes:].exp().cpu().numpy()
    return out


def _check_grid(grid: Any) -> tuple[float, ...]:
    if isinstance(grid, (str, bytes)) or not isinstance(grid, Sequence):
        raise TypeError(f"grid must be a sequence of numbers, got {type(grid).__name__}")
    values: list[float] = []
    for g in grid:
        if isinstance(g, bool) or not isinstance(g, numbers.Real):
            raise TypeError(f"grid must hold real numbers, got {g!r}")
        values.append(float(g))
    if not values:
        raise ValueError("grid must hold at least one factor, e.g. (0.0, 0.5, 2.0)")
    if not all(np.isfinite(v) and v >= 0.0 for v in values):
        raise ValueError(f"grid factors must be finite and non-negative, got {list(grid)}")
    return tuple(values)


def fit_reject_weights(
    logits_in: torch.Tensor | npt.NDArray[Any],
    logits_out: torch.Tensor | npt.NDArray[Any],
    num_classes: int,
    *,
    rounds: int = 3,
    grid: Sequence[float] = _DEFAULT_GRID,
) -> torch.Tensor:
    """Fit reject-unit weights by the paper's greedy search (coordinate ascent on AUROC).

    Fit on **held-out in-distribution data** and the **training outliers** (the
    unlabeled "other" data used for fine-tuning), never on the OOD test sets:
    weights tuned on test outliers give optimistic, unreportable results.

    Starting from all ones (i.e. :func:`~rejectnet.scores.sum_reject`), each round
    visits every reject unit ``j`` in order, tries ``w_j * f`` for every factor ``f``
    in ``grid`` and keeps the best candidate if it strictly improves the AUROC of
    ``sum_j w_j p_j`` (in-distribution logits are the negatives, outliers the
    positives; ties go to the earlier factor). The search stops after ``rounds``
    rounds or when a round changes nothing. The result is rescaled to sum to ``k``.
    The procedure is deterministic.

    Args:
        logits_in: Held-out in-distribution logits of shape ``(N_in, C + k)``.
        logits_out: Training-outlier logits of shape ``(N_out, C + k)``.
        num_classes: The number ``C`` of ordinary classes; ``k = width - C >= 1``.
        rounds: Number of coordinate-ascent rounds (``>= 0``; 0 returns all ones).
        grid: Multiplicative factors tried for each weight (finite, non-negative).

    Returns:
        A float32 CPU tensor of shape ``(k,)``: non-negative weights summing to ``k``,
        for :func:`~rejectnet.scores.weighted_reject`.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If the logits are empty, not 2-D, not finite or of different
            widths, if ``num_classes`` leaves no reject unit, or if ``rounds`` or
            ``grid`` is invalid.

    Example:
        >>> import torch
        >>> z_in = torch.tensor([[3.0, 0.0, 0.0, 0.0], [0.0, 3.0, 0.5, 0.0]])
        >>> z_out = torch.tensor([[0.0, 0.0, 0.2, 2.0], [0.0, 0.0, 0.0, 3.0]])
        >>> w = fit_reject_weights(z_in, z_out, num_classes=2)
        >>> w.shape, float(w.sum())
        (torch.Size([2]), 2.0)
    """
    z_in, z_out, c = _check_logit_pair(logits_in, logits_out, num_classes)
    n_rounds = check_int(rounds, "rounds", minimum=0)
    factors = _check_grid(grid)
    probs = np.concatenate([_reject_probs(z_in, c), _reject_probs(z_out, c)], axis=0)
    labels = np.concatenate([np.zeros(z_in.shape[0]), np.ones(z_out.shape[0])])
    weights = _coordinate_ascent(probs, labels, n_rounds, factors)
    return torch.as_tensor(weights, dtype=torch.float32)


def _check_logit_pair(
    logits_in: Any, logits_out: Any, num_classes: Any
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Both logit sets as ``(N, C + k)`` tensors of one width, non-empty; and C."""
    z_in = as_logits(logits_in, "logits_in")
    z_out = as_logits(logits_out, "logits_out")
    if z_in.shape[1] != z_out.shape[1]:
        raise ValueError(
            "logits_in and logits_out must have the same width (C + k), got "
            f"{z_in.shape[1]} and {z_out.shape[1]}"
        )
    for name, z in (("logits_in", z_in), ("logits_out", z_out)):
        if z.shape[0] == 0:
            raise ValueError(f"{name} is empty; it needs at least one sample")
    return z_in, z_out, check_num_classes(num_classes, int(z_in.shape[1]))


def _coordinate_ascent(
    probs: npt.NDArray[Any], labels: npt.NDArray[Any], rounds: int, factors: tuple[float, ...]
) -> npt.NDArray[np.float64]:
    """The greedy search of :func:`fit_reject_weights` on ``(N, k)`` reject probabilities;
    the weights rescaled to sum to k."""
    k = probs.shape[1]

    def auroc(w: npt.NDArray[np.float64]) -> float:
        return float(roc_auc_score(labels, probs @ w))

    weights = np.ones(k, dtype=np.float64)
    best = auroc(weights)
    for _ in range(rounds):
        changed = False
        for j in range(k):
            best_candidate: npt.NDArray[np.float64] | None = None
            best_candidate_auc = best
            for f in factors:
                candidate = weights.copy()
                candidate[j] *= f
                if not np.any(candidate > 0) or np.array_equal(candidate, weights):
                    continue
                a = auroc(candidate)
                if a > best_candidate_auc + _IMPROVEMENT_TOL:
                    best_candidate, best_candidate_auc = candidate, a
            if best_candidate is not None:
                weights, best = best_candidate, best_candidate_auc
                changed = True
        if not changed:
            break
    weights *= k / weights.sum()
    return weights
