"""Baseline OOD scores over the ``C`` class logits of an ordinary classifier.

These are the usual comparison points for reject-class scores: maximum softmax
probability (Hendrycks & Gimpel 2017), the energy score (Liu et al. 2020) and the
maximum logit. Each is negated so that, like every score in :mod:`rejectnet.scores`,
higher means more likely OOD. To score a wrapped ``C + k`` model with a baseline,
pass only its first ``C`` columns (or use :func:`rejectnet.scores.compute` with
``num_classes``).

A tensor in gives a tensor out (same device; float32 for float32/float16/bfloat16
input, float64 for float64 input); a numpy array in gives a numpy array out.
"""

from __future__ import annotations

from typing import Any

import torch

from rejectnet import decision
from rejectnet._validation import as_logits, check_number
from rejectnet.scores.reject import _like_input, _LogitsT

__all__ = ["energy", "max_logit", "msp"]


def _class_logits(logits: Any) -> torch.Tensor:
    z = as_logits(logits)
    if z.shape[1] < 1:
        raise ValueError(f"logits must have at least one class column, got shape {tuple(z.shape)}")
    return z


def msp(logits: _LogitsT) -> _LogitsT:
    """Negative maximum softmax probability, ``-max_c softmax(z)_c``.

    Args:
        logits: Class logits of shape ``(N, C)`` as a tensor or numpy array.

    Returns:
        Scores of shape ``(N,)`` in ``[-1, -1/C]``; higher means more likely OOD.

    Raises:
        TypeError: If ``logits`` is not a tensor or array of numbers.
        ValueError: If ``logits`` is not 2-D, has no column, or is not finite.

    Example:
        >>> import torch
        >>> msp(torch.tensor([[4.0, 0.0, 0.0], [1.0, 1.0, 1.0]])).round(decimals=4)
        tensor([-0.9647, -0.3333])
    """
    z = _class_logits(logits)
    return _like_input(decision.msp_kernel(z, int(z.shape[1])), logits)


def energy(logits: _LogitsT, temperature: float = 1.0) -> _LogitsT:
    """Energy score, ``-T * logsumexp(z / T)``.

    Args:
        logits: Class logits of shape ``(N, C)`` as a tensor or numpy array.
        temperature: The temperature ``T``, a finite number ``> 0``.

    Returns:
        Scores of shape ``(N,)``; higher means more likely OOD.

    Raises:
        TypeError: If ``logits`` or ``temperature`` has the wrong type.
        ValueError: If ``logits`` is not 2-D, has no column, or is not finite, or
            ``temperature`` is not a finite positive number.

    Example:
        >>> import torch
        >>> energy(torch.tensor([[4.0, 0.0, 0.0], [1.0, 1.0, 1.0]])).round(decimals=4)
        tensor([-4.0360, -2.0986])
    """
    t = check_number(temperature, "temperature", positive=True)
    z = _class_logits(logits)
    return _like_input(t * decision.energy_kernel(z / t, int(z.shape[1])), logits)


def max_logit(logits: _LogitsT) -> _LogitsT:
    """Negative maximum logit, ``-max_c z_c``.

    Args:
        logits: Class logits of shape ``(N, C)`` as a tensor or numpy array.

    Returns:
        Scores of shape ``(N,)``; higher means more likely OOD.

    Raises:
        TypeError: If ``logits`` is not a tensor or array of numbers.
        ValueError: If ``logits`` is not 2-D, has no column, or is not finite.

    Example:
        >>> import torch
        >>> max_logit(torch.tensor([[4.0, 0.0, 0.0], [1.0, 1.0, 1.0]]))
        tensor([-4., -1.])
    """
    z = _class_logits(logits)
    return _like_input(decision.max_logit_kernel(z, int(z.shape[1])), logits)
