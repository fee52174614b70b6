"""Reject-class OOD scores over the logits of a model with ``k`` reject units.

A model wrapped by :class:`rejectnet.RejectHead` outputs ``C + k`` logits per sample:
the first ``C`` are the ordinary class logits, the last ``k`` are *reject units*.
One softmax runs over all ``C + k`` outputs; every score below summarises the
probability mass ``p_j`` that lands on the reject units ``R = {C, ..., C + k - 1}``
(Mohseni et al., AAAI 2020, Table 2). Every score is "higher = more OOD".

All scores are computed from ``torch.log_softmax`` / ``torch.logsumexp`` in one
batched pass, so logits of magnitude ``1e4`` do not overflow. A tensor in gives a
tensor out (same device; float32 for float32/float16/bfloat16 input, float64 for
float64 input); a numpy array in gives a numpy array out. The input is never modified.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch

from rejectnet._validation import as_logits, check_num_classes

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


def _shift_to_max(z: torch.Tensor) -> torch.Tensor:
    """Subtract each row's maximum (a new tensor; the input is untouched).

    Softmax is invariant to this shift, and it keeps the log-normaliser near zero, so
    that e.g. ``logsumexp(z_R) - logsumexp(z)`` does not lose the small difference
    to rounding when the logits are large (``1e4`` in float32).
    """
    if z.shape[0] == 0 or z.shape[1] == 0:
        return z
    return z - z.amax(dim=1, keepdim=True)


def _reject_log_probs(logits: Any, num_classes: Any) -> tuple[torch.Tensor, int]:
    """Return ``(log_softmax over all C+k outputs, C)`` after validating the inputs."""
    z = as_logits(logits)
    c = check_num_classes(num_classes, int(z.shape[1]))
    return torch.log_softmax(_shift_to_max(z), dim=1), c


def _partial_entropy(log_p: torch.Tensor) -> torch.Tensor:
    """Return ``-sum_j p_j log p_j`` over the columns of ``log_p`` (finite, no NaN).

    A probability of exactly 0 has ``log_p = -inf`` (finite logits more than the float
    range apart, e.g. ``3e38`` and ``-3e38`` in float32); its term is 0, not ``0 * -inf``.
    """
    terms = log_p.exp() * log_p
    return -torch.where(torch.isneginf(log_p), torch.zeros_like(terms), terms).sum(dim=1)


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
    log_p, c = _reject_log_probs(logits, num_classes)
    return _like_input(log_p[:, c:].amax(dim=1).exp(), logits)


def sum_reject(logits: _LogitsT, num_classes: int) -> _LogitsT:
    """Total reject-unit probability, ``sum_{j in R} p_j`` (rejectnet's default score).

    Computed as ``exp(logsumexp(z_R) - logsumexp(z))``, which is exact and finite
    for any finite logits.

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
        >>> sum_reject(z, num_classes=2).round(decimals=4)
        tensor([0.0347, 0.9194])
    """
    z = as_logits(logits)
    c = check_num_classes(num_classes, int(z.shape[1]))
    z = _shift_to_max(z)
    log_mass = torch.logsumexp(z[:, c:], dim=1) - torch.logsumexp(z, dim=1)
    return _like_input(log_mass.exp().clamp(max=1.0), logits)


def _check_weights(weights: Any, k: int, width: int, num_classes: int) -> npt.NDArray[np.float64]:
    """Validate reject-unit weights: length ``k``, finite, non-negative, not all zero."""
    expected = f"expected length k = {k} (logits width {width} - num_classes {num_classes})"
    if isinstance(weights, torch.Tensor):
        w: npt.NDArray[np.float64] = np.array(
            weights.detach().to("cpu", torch.float64).numpy(), dtype=np.float64, copy=True
        )
    else:
        try:
            w = np.array(weights, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"weights must be a 1-D tensor, array or sequence of numbers ({expected}): {err}"
            ) from None
    if w.ndim != 1 or w.shape[0] != k:
        raise ValueError(
            f"weights must have one entry per reject unit, {expected}, got shape {tuple(w.shape)}"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
    if not np.any(w > 0):
        raise ValueError("weights must not all be zero (the score would be 0 for every sample)")
    return w


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
    log_p, c = _reject_log_probs(logits, num_classes)
    width = int(log_p.shape[1])
    w = _check_weights(weights, width - c, width, c)
    w_t = torch.as_tensor(w, dtype=log_p.dtype, device=log_p.device)
    return _like_input((log_p[:, c:].exp() * w_t).sum(dim=1), logits)


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
    log_p, c = _reject_log_probs(logits, num_classes)
    return _like_input(_partial_entropy(log_p[:, c:]), logits)


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
    log_p, c = _reject_log_probs(logits, num_classes)
    return _like_input(_partial_entropy(log_p[:, c:]) - _partial_entropy(log_p[:, :c]), logits)
