"""Reject-class OOD scores over the logits of a model with ``k`` reject units.

A model wrapped by :class:`rejectnet.RejectHead` outputs ``C + k`` logits per sample:
the first ``C`` are the ordinary class logits, the last ``k`` are *reject units*.
One softmax runs over all ``C + k`` outputs; every score below summarises the
probability mass ``p_j`` that lands on the reject units ``R = {C, ..., C + k - 1}``
(Mohseni et al., AAAI 2020, Table 2). Every score is "higher = more OOD".

The functions here check their arguments and call the score kernels of
:mod:`rejectnet.decision` (the one copy of each formula, which
:meth:`~rejectnet.RejectHead.predict` and the exports use too): one ``torch.softmax`` /
``torch.log_softmax`` per batch, stable for logits of magnitude ``1e4``. A tensor in gives a
tensor out (same device; float32 for float32/float16/bfloat16 input, float64 for
float64 input); a numpy array in gives a numpy array out. The input is never modified.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from rejectnet import decision
from rejectnet._validation import as_logits, check_num_classes
from rejectnet._validation import check_reject_weights as _check_weights

__all__ = [
    "entropy_diff",
    "entropy_reject",
    "max_reject",
    "sum_reject",
    "weighted_reject",
]

_LogitsT = TypeVar("_LogitsT", torch.Tensor, "npt.NDArray[Any]")


def _like_input(scores: torch.Tensor, logits: _LogitsT) -> _LogitsT:
    """Return ``scores`` in the container type of ``logits`` (numpy in, numpy out)."""
    if isinstance(logits, np.ndarray):
        return scores.detach().cpu().numpy()
    return scores


def _checked(logits: Any, num_classes: Any) -> tuple[torch.Tensor, int]:
    """``(logits as a float tensor, C)`` after validating both (the edge's checks)."""
    z = as_logits(logits)
    return z, check_num_classes(num_classes, int(z.shape[1]))


def _columns(weights: npt.NDArray[np.float64], c: int, z: torch.Tensor) -> torch.Tensor:
    """The ``(C + k,)`` column weights: 0 for the C classes, then the k reject weights."""
    w = torch.zeros(c + weights.shape[0], dtype=torch.float64)
    w[c:] = torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float64))
    return w.to(device=z.device, dtype=decision.score_dtype(z.dtype))


def max_reject(logits: _LogitsT, num_classes: int) -> _LogitsT:
    """Largest reject-unit probability, ``max_{j in R} p_j``.

    Args:
        logits: Logits of shape ``(N, C + k)`` as a tensor or numpy array.
        num_classes: The number ``C`` of ordinary classes; ``k = width - C >= 1``.

    Returns:
        Scores of shape ``(N,)`` in ``[0, 1]``; higher means more likely OOD.

    Raises:
        TypeError: If ``logits`` is not a tensor/array of numbers or ``num_classes``
            not an integer.
        ValueError: If ``logits`` is not 2-D or not finite, or ``num_classes`` leaves
            no reject unit.

    Example:
        >>> import torch
        >>> z = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
        >>> max_reject(z, num_classes=2).round(decimals=4)
        tensor([0.0174, 0.8098])
    """
    z, c = _checked(logits, num_classes)
    return _like_input(decision.max_reject_kernel(z, c), logits)


def sum_reject(logits: _LogitsT, num_classes: int) -> _LogitsT:
    """Total reject-unit probability, ``sum_{j in R} p_j`` (rejectnet's default score).

    Computed by :func:`rejectnet.decision.weighted_sum` (one softmax, a row-wise
    weighted sum), the kernel :meth:`~rejectnet.RejectHead.predict` and the exports use,
    so the values are theirs bit for bit; finite for any finite logits. As a sum of
    probabilities it can exceed 1 by a rounding error.

    Args:
        logits: Logits of shape ``(N, C + k)`` as a tensor or numpy array.
        num_classes: The number ``C`` of ordinary classes; ``k = width - C >= 1``.

    Returns:
        Scores of shape ``(N,)`` in ``[0, 1]`` (up to rounding); higher means more
        likely OOD.

    Raises:
        TypeError: If ``logits`` is not a tensor/array of numbers or ``num_classes``
            not an integer.
        ValueError: If ``logits`` is not 2-D or not finite, or ``num_classes`` leaves
            no reject unit.

    Example:
        >>> import torch
        >>> z = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
        >>> sum_reject(z, num_classes=2).round(decimals=4)
        tensor([0.0347, 0.9194])
    """
    z, c = _checked(logits, num_classes)
    return _like_input(decision.weighted_sum(z, _columns(np.ones(z.shape[1] - c), c, z)), logits)


def weighted_reject(logits: _LogitsT, num_classes: int, weights: Any) -> _LogitsT:
    """Weighted reject-unit probability, ``sum_{j in R} w_j p_j``.

    With all weights equal to one this is :func:`sum_reject`. Fit weights with
    :func:`rejectnet.scores.fit_reject_weights`.

    Args:
        logits: Logits of shape ``(N, C + k)`` as a tensor or numpy array.
        num_classes: The number ``C`` of ordinary classes; ``k = width - C >= 1``.
        weights: ``k`` finite, non-negative weights (not all zero), one per reject
            unit, as a tensor, array or sequence.

    Returns:
        Scores of shape ``(N,)``; higher means more likely OOD.

    Raises:
        TypeError: If an argument has the wrong type.
        ValueError: If ``logits`` is not 2-D or not finite, ``num_classes`` leaves no
            reject unit, or ``weights`` has the wrong length or invalid values.

    Example:
        >>> import torch
        >>> z = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
        >>> weighted_reject(z, num_classes=2, weights=[1.0, 0.0]).round(decimals=4)
        tensor([0.0174, 0.8098])
    """
    z, c = _checked(logits, num_classes)
    width = int(z.shape[1])
    w = _check_weights(weights, width - c, width, c)
    return _like_input(decision.weighted_sum(z, _columns(w, c, z)), logits)


def entropy_reject(logits: _LogitsT, num_classes: int) -> _LogitsT:
    """Partial entropy of the reject units, ``-sum_{j in R} p_j log p_j`` (Entropy^out).

    ``p`` is the softmax over all ``C + k`` outputs, not renormalised over ``R``.

    Args:
        logits: Logits of shape ``(N, C + k)`` as a tensor or numpy array.
        num_classes: The number ``C`` of ordinary classes; ``k = width - C >= 1``.

    Returns:
        Non-negative scores of shape ``(N,)``; higher means more likely OOD.

    Raises:
        TypeError: If ``logits`` is not a tensor/array of numbers or ``num_classes``
            not an integer.
        ValueError: If ``logits`` is not 2-D or not finite, or ``num_classes`` leaves
            no reject unit.

    Example:
        >>> import torch
        >>> z = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
        >>> entropy_reject(z, num_classes=2).round(decimals=4)
        tensor([0.1408, 0.4132])
    """
    z, c = _checked(logits, num_classes)
    return _like_input(decision.entropy_reject_kernel(z, c), logits)


def entropy_diff(logits: _LogitsT, num_classes: int) -> _LogitsT:
    """Entropy^out minus Entropy^in: ``-sum_{j in R} p_j log p_j + sum_{c < C} p_c log p_c``.

    Both partial entropies use the softmax over all ``C + k`` outputs.

    Args:
        logits: Logits of shape ``(N, C + k)`` as a tensor or numpy array.
        num_classes: The number ``C`` of ordinary classes; ``k = width - C >= 1``.

    Returns:
        Scores of shape ``(N,)``; higher means more likely OOD.

    Raises:
        TypeError: If ``logits`` is not a tensor/array of numbers or ``num_classes``
            not an integer.
        ValueError: If ``logits`` is not 2-D or not finite, or ``num_classes`` leaves
            no reject unit.

    Example:
        >>> import torch
        >>> z = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
        >>> entropy_diff(z, num_classes=2).round(decimals=4)
        tensor([0.0197, 0.1543])
    """
    z, c = _checked(logits, num_classes)
    return _like_input(decision.entropy_diff_kernel(z, c), logits)
