"""Temperature scaling: the scalar T that minimises the NLL of ``softmax(logits / T)``.

:meth:`rejectnet.RejectHead.fit_temperature` collects held-out in-distribution logits and
labels and calls :func:`fit_temperature_to`; the result lives in the model's
``temperature`` buffer. The negative log-likelihood
``NLL(b) = mean_i [logsumexp(b z_i) - b z_{i, y_i}]`` with ``b = 1 / T`` is convex in
``b`` (its second derivative is the variance of ``z_i`` under the softmax), so its
minimiser is the root of the increasing derivative
``NLL'(b) = mean_i [E_{p_b}[z_i] - z_{i, y_i}]``, found here by bisection in float64:
deterministic, no learning rate, no iteration budget to tune.
"""

from __future__ import annotations

import math

import torch

__all__ = ["T_MAX", "T_MIN", "fit_temperature_to", "nll"]

T_MIN = 0.01
"""The smallest temperature :func:`fit_temperature_to` returns."""
T_MAX = 100.0
"""The largest temperature :func:`fit_temperature_to` returns."""


def nll(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / temperature)``.

    Example:
        >>> import torch
        >>> z = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> round(nll(z, torch.tensor([0, 1]), 1.0), 4)
        0.1269
    """
    z = logits.double() / temperature
    picked = z.gather(1, labels.long().view(-1, 1)).squeeze(1)
    return float((torch.logsumexp(z, dim=1) - picked).mean())


def _slope(z: torch.Tensor, picked: torch.Tensor, b: float) -> float:
    p = torch.softmax(z * b, dim=1)
    return float(((p * z).sum(dim=1) - picked).mean())


def fit_temperature_to(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """The temperature in ``[T_MIN, T_MAX]`` minimising :func:`nll` over all columns.

    Args:
        logits: ``(N, W)`` finite logits (W = C + k for a wrapped model: every column
            takes part in the softmax).
        labels: ``(N,)`` integer class indices in ``[0, num_classes)``.
        num_classes: C; labels must lie below it.

    Returns:
        The fitted temperature (clipped to the range when the optimum lies outside).

    Raises:
        ValueError: If the labels are not integers in range, the shapes disagree, or
            there are no samples.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> z = torch.randn(500, 4, generator=g) * 3.0
        >>> y = torch.distributions.Categorical(logits=z / 3.0).sample()  # true T is 3
        >>> 2.5 < fit_temperature_to(z, y, 4) < 3.6
        True
    """
    labels = _class_labels(logits, labels, num_classes)
    z = logits.detach().to("cpu", torch.float64)
    z = z - z.amax(dim=1, keepdim=True)
    picked = z.gather(1, labels.view(-1, 1)).squeeze(1)
    return _bisect(z, picked)


def _class_labels(logits: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``labels`` as ``(N,)`` int64 class indices in ``[0, num_classes)``, one per row."""
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        if labels.is_floating_point() and bool((labels == labels.round()).all()):
            labels = labels.long()
        else:
            raise ValueError(
                f"loader labels must be integer class indices, got dtype {labels.dtype}"
            )
    labels = labels.reshape(-1).long()
    if logits.ndim != 2 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"loader yielded {labels.shape[0]} labels for {logits.shape[0]} samples; each "
            "batch needs one label per sample"
        )
    if labels.numel() == 0:
        raise ValueError("loader yielded no samples; fit_temperature needs at least one")
    lo_y, hi_y = int(labels.min()), int(labels.max())
    if lo_y < 0 or hi_y >= num_classes:
        raise ValueError(
            f"loader labels must be class indices in [0, {num_classes}), got values in "
            f"[{lo_y}, {hi_y}]"
        )
    return labels


def _bisect(z: torch.Tensor, picked: torch.Tensor) -> float:
    """The temperature where the NLL's slope changes sign (bisection on ``log(1 / T)``)."""
    lo, hi = math.log(1.0 / T_MAX), math.log(1.0 / T_MIN)  # bisection on log(1 / T)
    if _slope(z, picked, math.exp(lo)) >= 0.0:
        return T_MAX
    if _slope(z, picked, math.exp(hi)) <= 0.0:
        return T_MIN
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if _slope(z, picked, math.exp(mid)) < 0.0:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return 1.0 / math.exp(0.5 * (lo + hi))
