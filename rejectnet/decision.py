"""The decision path: OOD scores from logits in a handful of fused ops, and the threshold test.

One implementation serves :meth:`rejectnet.RejectHead.predict`,
:meth:`~rejectnet.RejectHead.ood_score`, :meth:`~rejectnet.RejectHead.calibrate`,
:class:`rejectnet.export.DeployedModel` and the ONNX graph, so that the three paths give
the same scores and decisions by construction. The functions here do no argument checks
and no host synchronisation (the callers check once), so they trace into
``torch.compile`` / ``torch.export`` / ONNX graphs and cost a few microseconds at batch 1.

Scores (the built-in reject scores and baselines of :mod:`rejectnet.scores`, computed
with fewer ops; the values agree with those functions to float32 rounding, not bit for
bit):

* ``sum_reject`` and ``weighted_reject``: one softmax over all C + k logits, then a
  row-wise weighted sum with a column-weight vector (0 for the C classes, 1 or the score
  weight ``w_j`` for the k reject units). A row-wise product and sum rather than a
  matrix-vector product, whose BLAS rounding of a row depends on the batch size: the same
  input gets the same score in any batch. A sum of probabilities can exceed 1 by a
  rounding error; it is not clamped.
* ``max_reject``: the largest reject-unit probability of the same softmax.
* ``entropy_reject`` / ``entropy_diff``: partial entropies of one log-softmax.
* ``msp``, ``energy``, ``max_logit``: on the first C logits.

Any other (user-registered) score runs its registered function.

The decision rule is ``is_ood = not (score <= threshold)``: ``score > threshold``, and a
NaN score (from NaN or infinite inputs or logits) is OOD. The threshold is stored in
float64; the comparison runs in the score's dtype against :func:`threshold_for`, the
largest value of that dtype that is ``<= threshold``, which gives exactly the decisions
of the float64 comparison ``float64(score) > threshold`` for every score value (a
float32 ``s`` is ``> t`` iff it is ``> round_down_f32(t)``), without converting scores
to float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from rejectnet._validation import is_tracing
from rejectnet.prediction import REJECTED
from rejectnet.scores import registry
from rejectnet.scores import reject as _reject

__all__ = [
    "FUSED_SCORES",
    "class_of",
    "column_weights",
    "compute_score",
    "decide",
    "is_tracing",
    "labels_for",
    "nan_if_nonfinite",
    "propagates_nonfinite",
    "ScoreFn",
    "score_dtype",
    "score_function",
    "threshold_for",
]

FUSED_SCORES = frozenset(
    {
        "sum_reject",
        "weighted_reject",
        "max_reject",
        "entropy_reject",
        "entropy_diff",
        "msp",
        "energy",
        "max_logit",
    }
)
"""Scores computed here in fused form (when not overridden by a user registration)."""

_SOFTMAX_BASED = frozenset(
    {"sum_reject", "weighted_reject", "max_reject", "entropy_reject", "entropy_diff"}
)


def _is_builtin(name: str) -> bool:
    """Whether ``name`` is served by the built-in function (no user override)."""
    if name not in FUSED_SCORES:
        return False
    fn = registry.spec(name).fn
    return bool(getattr(fn, "__module__", "").startswith("rejectnet.scores."))


def score_dtype(logits_dtype: torch.dtype) -> torch.dtype:
    """The dtype of scores computed from logits of ``logits_dtype`` (float64 or float32).

    Example:
        >>> import torch
        >>> score_dtype(torch.bfloat16), score_dtype(torch.float64)
        (torch.float32, torch.float64)
    """
    return torch.float64 if logits_dtype == torch.float64 else torch.float32


def propagates_nonfinite(name: str) -> bool:
    """Whether NaN or infinite logits always give a NaN score for this score.

    True for the built-in reject scores (one softmax over all C + k logits: an infinite
    logit makes ``inf - inf``); false for the baselines (they see the first C logits
    only, and ``energy`` / ``max_logit`` turn ``inf`` into ``-inf``) and user scores,
    whose graphs need an explicit guard.
    """
    return name in _SOFTMAX_BASED and _is_builtin(name)


def column_weights(
    name: str,
    num_classes: int,
    k: int,
    score_weights: torch.Tensor,
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor | None:
    """The ``(C + k,)`` weight vector of ``sum_reject`` / ``weighted_reject``, else ``None``.

    Args:
        name: Canonical score name.
        num_classes: C.
        k: Number of reject units.
        score_weights: The k weights of ``weighted_reject`` (validated here for it).
        dtype: The score dtype.
        device: The logits' device.

    Returns:
        Zeros for the C classes, then ones (``sum_reject``) or the weights.

    Raises:
        ValueError: If ``weighted_reject``'s weights are invalid (wrong length,
            negative, not finite, all zero).

    Example:
        >>> import torch
        >>> column_weights("sum_reject", 2, 3, torch.ones(3), torch.float32, torch.device("cpu"))
        tensor([0., 0., 1., 1., 1.])
    """
    if name not in ("sum_reject", "weighted_reject") or not _is_builtin(name):
        return None
    w = torch.zeros(num_classes + k, dtype=torch.float64)
    if name == "sum_reject":
        w[num_classes:] = 1.0
    else:
        checked = _reject._check_weights(score_weights, k, num_classes + k, num_classes)
        w[num_classes:] = torch.from_numpy(checked)
    return w.to(device=device, dtype=dtype)


def _partial_entropy(log_p: torch.Tensor) -> torch.Tensor:
    terms = log_p.exp() * log_p
    return -torch.where(torch.isneginf(log_p), torch.zeros_like(terms), terms).sum(dim=1)


ScoreFn = Callable[[torch.Tensor, "torch.Tensor | None"], torch.Tensor]
"""``fn(logits, column_weights) -> (N,) scores``, as :func:`score_function` returns."""


def score_function(name: str, num_classes: int) -> ScoreFn:
    """The fused kernel of score ``name``, resolved once (for callers on a hot path).

    Args:
        name: Canonical score name.
        num_classes: C.

    Returns:
        ``fn(logits, weights)`` computing what :func:`compute_score` computes.

    Example:
        >>> import torch
        >>> fn = score_function("max_logit", 2)
        >>> fn(torch.tensor([[1.0, 3.0, 0.0]]), None)
        tensor([-3.])
    """
    c = num_classes
    if not _is_builtin(name):

        def user(z: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
            out: torch.Tensor = registry.compute(name, z, num_classes=c)
            return out

        return user
    if name in ("sum_reject", "weighted_reject"):

        def weighted(z: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
            assert w is not None, "pass column_weights(...) for sum_reject / weighted_reject"
            p = torch.softmax(z, 1, dtype=score_dtype(z.dtype))
            # a row-wise product and sum, NOT a matrix-vector product: BLAS gemv rounds a
            # row differently depending on how many rows the batch has, and a decision
            # must not depend on the rest of the batch
            return (p * w).sum(1)

        return weighted
    if name == "max_reject":
        return lambda z, w: (
            torch.softmax(z, 1, dtype=score_dtype(z.dtype)).narrow(1, c, z.shape[1] - c).amax(1)
        )
    if name == "entropy_reject":
        return lambda z, w: _partial_entropy(
            torch.log_softmax(z, 1, dtype=score_dtype(z.dtype)).narrow(1, c, z.shape[1] - c)
        )
    if name == "entropy_diff":

        def diff(z: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
            log_p = torch.log_softmax(z, 1, dtype=score_dtype(z.dtype))
            return _partial_entropy(log_p.narrow(1, c, z.shape[1] - c)) - _partial_entropy(
                log_p.narrow(1, 0, c)
            )

        return diff
    if name == "msp":
        return lambda z, w: -torch.softmax(z.narrow(1, 0, c), 1, dtype=score_dtype(z.dtype)).amax(1)
    if name == "energy":
        return lambda z, w: -torch.logsumexp(z.narrow(1, 0, c).to(score_dtype(z.dtype)), 1)
    return lambda z, w: -z.narrow(1, 0, c).amax(1).to(score_dtype(z.dtype))  # max_logit


def compute_score(
    logits: torch.Tensor,
    name: str,
    num_classes: int,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """An OOD score from ``(N, C + k)`` logits, higher = more likely OOD.

    No checks and no host synchronisation for the built-in scores: the caller has
    validated ``logits`` (2-D, ``C + k`` columns). Apply a temperature before calling
    (``logits / T``).

    Args:
        logits: ``(N, C + k)`` logits.
        name: Canonical score name (see :func:`rejectnet.scores.available`).
        num_classes: C.
        weights: :func:`column_weights` for ``sum_reject`` / ``weighted_reject``.

    Returns:
        ``(N,)`` scores in :func:`score_dtype` of the logits' dtype.

    Example:
        >>> import torch
        >>> z = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 1.0]])
        >>> w = torch.tensor([0.0, 0.0, 1.0, 1.0])
        >>> compute_score(z, "sum_reject", 2, w).round(decimals=4)
        tensor([0.0347, 0.9194])
        >>> compute_score(z, "max_reject", 2).round(decimals=4)
        tensor([0.0174, 0.8098])
    """
    return score_function(name, num_classes)(logits, weights)


def threshold_for(value: float, dtype: torch.dtype) -> float:
    """The largest value of ``dtype`` that is ``<= value`` (as a Python float).

    Comparing a score of that dtype with it (``score <= t``) decides exactly like the
    float64 comparison with ``value``.

    Example:
        >>> import torch
        >>> t = threshold_for(0.1, torch.float32)
        >>> t <= 0.1, torch.tensor(0.1, dtype=torch.float64).float().item() > 0.1
        (True, True)
    """
    if dtype == torch.float64 or math.isnan(value):
        return value
    t = torch.tensor(value, dtype=torch.float64).to(dtype)
    if float(t) > value:
        t = torch.nextafter(t, torch.tensor(-math.inf, dtype=dtype))
    return float(t)


def decide(score: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """``is_ood = not (score <= threshold)``: above the threshold, or NaN.

    Args:
        score: ``(N,)`` scores.
        threshold: A 0-d tensor of the score's dtype from :func:`threshold_for`.

    Example:
        >>> import torch
        >>> decide(torch.tensor([0.2, 0.5, 0.7, float("nan")]), torch.tensor(0.5))
        tensor([False, False,  True,  True])
    """
    return torch.le(score, threshold).logical_not_()


def class_of(logits: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The arg-max over the first C logits (the first index among ties).

    Example:
        >>> import torch
        >>> class_of(torch.tensor([[0.0, 2.0, 9.0], [3.0, 1.0, 0.0]]), 2)
        tensor([1, 0])
    """
    return logits.narrow(1, 0, num_classes).argmax(1)


def labels_for(classes: torch.Tensor, is_ood: torch.Tensor) -> torch.Tensor:
    """The predicted labels: ``classes``, with ``-1`` (``REJECTED``) where ``is_ood``.

    Example:
        >>> import torch
        >>> labels_for(torch.tensor([2, 0]), torch.tensor([True, False]))
        tensor([-1,  0])
    """
    return classes.masked_fill(is_ood, REJECTED)


def nan_if_nonfinite(score: torch.Tensor, *tensors: torch.Tensor) -> torch.Tensor:
    """``score`` plus 0 for rows whose tensors are all finite, NaN for the other rows.

    ``(t * 0).sum(dims)`` is exactly 0 for a finite row and NaN otherwise (no overflow:
    every term is 0 or NaN), so adding it marks the row OOD under :func:`decide` and
    leaves every other score unchanged. Non-floating tensors are skipped.

    Example:
        >>> import torch
        >>> x = torch.tensor([[1.0, 2.0], [float("inf"), 0.0]])
        >>> nan_if_nonfinite(torch.tensor([0.25, 0.5]), x)
        tensor([0.2500,    nan])
    """
    for t in tensors:
        if t.is_floating_point():
            dims = tuple(range(1, t.ndim))
            guard = (t * 0).sum(dim=dims) if dims else t * 0
            score = score + guard.to(score.dtype)
    return score
