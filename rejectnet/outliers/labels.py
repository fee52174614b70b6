"""Clustering pseudo-labels: balanced assignment of outliers to the k reject units.

The paper's first future-work item: instead of Algorithm 1's random reject unit for an
outlier the model calls in-distribution, assign the outliers of a batch to the k reject
units by clustering them (it cites DeepCluster, Caron et al. 2018). :class:`ClusterLabeler`
does it the way SwAV (Caron et al. 2020) does: the prototypes of the k clusters are the
reject units themselves (their weight vectors, on the features that enter the head),
the scores are the reject logits, and a few Sinkhorn-Knopp iterations turn them into an
assignment in which every reject unit receives an equal share of the batch. The
prototypes move with every optimiser step, so the clustering is refreshed at every pass,
and it needs no hook, no state and no random numbers: it is deterministic.

``SelfSupervisedRejectLoss(C, lam, pseudo_labels=ClusterLabeler())`` uses it;
``pseudo_labels="random"`` stays exactly Algorithm 1.
"""

from __future__ import annotations

import math

import torch

from rejectnet._validation import check_int, check_number
from rejectnet.outliers._base import Options

__all__ = ["MAX_ITERS", "ClusterLabeler", "sinkhorn_assign"]

MAX_ITERS = 1000
"""The most Sinkhorn iterations: SwAV uses 3, and the scaling converges geometrically,
so a thousand is far past any change in the assignment (and bounds the step's time)."""

MAX_TEMPERATURE = 1e6


def sinkhorn_assign(scores: torch.Tensor, temperature: float = 1.0, iters: int = 3) -> torch.Tensor:
    """Balanced assignment of ``M`` rows to ``k`` clusters from their ``(M, k)`` scores.

    Sinkhorn-Knopp in log space on ``exp(scores / temperature)``: columns are scaled to
    equal mass ``1/k``, rows to ``1/M``, ``iters`` times; each row then takes its
    largest entry. ``scores`` unchanged; one host synchronisation, the finiteness
    check (a NaN would otherwise turn every row's assignment into 0 without a word).

    Args:
        scores: ``(M, k)`` finite affinities (higher = closer).
        temperature: Softness, in ``(0, 1e6]``; smaller follows the scores more, larger
            balances more.
        iters: Sinkhorn iterations, in ``[1, MAX_ITERS]`` (SwAV: 3).

    Returns:
        ``(M,)`` int64 cluster indices in ``[0, k)``.

    Raises:
        TypeError: If ``scores`` is not a tensor, ``temperature`` not a number or
            ``iters`` not an int.
        ValueError: If ``scores`` is not 2-D or holds NaN or inf, or an argument is out
            of range.

    Example:
        >>> import torch
        >>> s = torch.tensor([[5.0, 0.0], [4.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
        >>> s.argmax(1).tolist(), sinkhorn_assign(s, temperature=1.0).tolist()
        ([0, 0, 0, 1], [0, 0, 1, 1])
    """
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a 2-D (M, k) tensor, got {type(scores).__name__}")
    if scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(f"scores must be a 2-D (M, k) tensor, got {tuple(scores.shape)}")
    temperature = check_number(temperature, "temperature", positive=True, maximum=MAX_TEMPERATURE)
    iters = check_int(iters, "iters", maximum=MAX_ITERS)
    m, k = scores.shape
    if m == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    bad = int((~torch.isfinite(scores.detach())).sum()) if scores.is_floating_point() else 0
    if bad:
        raise ValueError(
            f"scores holds {bad} NaN or infinite value(s) of {scores.numel()}; the "
            "assignment needs finite scores (check the model's outputs for overflow)"
        )
    with torch.no_grad():
        log_q = scores.detach().float() / temperature
        for _ in range(iters):
            log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)
            log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(m)
        return log_q.argmax(dim=1)


class ClusterLabeler(Options):
    """Pseudo-labels by balanced clustering of the outliers onto the k reject units.

    A :data:`rejectnet.losses.PseudoLabeler`: ``labeler(logits_out, num_classes)``
    returns ``(M,)`` targets in ``[C, C + k)``, from :func:`sinkhorn_assign` on the
    reject logits ``logits_out[:, C:]``.

    Args:
        temperature: Sinkhorn softness (see :func:`sinkhorn_assign`).
        iters: Sinkhorn iterations.

    Raises:
        TypeError: If ``temperature`` is not a number or ``iters`` not an int.
        ValueError: If an argument is out of range (see :func:`sinkhorn_assign`).

    Example:
        >>> import torch
        >>> from rejectnet.losses import SelfSupervisedRejectLoss
        >>> loss_fn = SelfSupervisedRejectLoss(3, 5.0, pseudo_labels=ClusterLabeler())
        >>> logits = torch.randn(10, 5)  # C = 3 classes + k = 2 reject units
        >>> targets = ClusterLabeler()(logits, 3)
        >>> bool(((targets >= 3) & (targets < 5)).all())
        True
    """

    _options = ("temperature", "iters")

    def __init__(self, temperature: float = 1.0, iters: int = 3) -> None:
        self.temperature = check_number(
            temperature, "temperature", positive=True, maximum=MAX_TEMPERATURE
        )
        self.iters = check_int(iters, "iters", maximum=MAX_ITERS)

    def __call__(self, logits_out: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Targets ``(M,)`` in ``[C, C + k)`` for the outlier logits ``(M, C + k)``.

        Raises:
            ValueError: If ``logits_out`` has no reject columns beyond ``num_classes``.
        """
        if not isinstance(logits_out, torch.Tensor):
            raise TypeError(
                f"logits_out must be a 2-D (M, C + k) tensor, got {type(logits_out).__name__}"
            )
        if logits_out.ndim != 2:
            raise ValueError(
                f"logits_out must be a 2-D (M, C + k) tensor, got {tuple(logits_out.shape)}"
            )
        check_int(num_classes, "num_classes")
        if logits_out.shape[1] <= num_classes:
            raise ValueError(
                f"logits_out has {logits_out.shape[1]} columns, num_classes={num_classes}: "
                "no reject units to assign to"
            )
        cluster = sinkhorn_assign(logits_out[:, num_classes:], self.temperature, self.iters)
        return cluster + num_classes
