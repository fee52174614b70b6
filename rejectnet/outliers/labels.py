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

from rejectnet.outliers._base import check_fraction, check_positive_int

__all__ = ["ClusterLabeler", "sinkhorn_assign"]


def sinkhorn_assign(scores: torch.Tensor, temperature: float = 1.0, iters: int = 3) -> torch.Tensor:
    """Balanced assignment of ``M`` rows to ``k`` clusters from their ``(M, k)`` scores.

    Sinkhorn-Knopp in log space on ``exp(scores / temperature)``: columns are scaled to
    equal mass ``1/k``, rows to ``1/M``, ``iters`` times; each row then takes its
    largest entry. No host synchronisation; ``scores`` unchanged.

    Args:
        scores: ``(M, k)`` affinities (higher = closer).
        temperature: Softness; smaller follows the scores more, larger balances more.
        iters: Sinkhorn iterations (SwAV: 3).

    Returns:
        ``(M,)`` int64 cluster indices in ``[0, k)``.

    Raises:
        ValueError: If ``scores`` is not 2-D or an argument is out of range.

    Example:
        >>> import torch
        >>> s = torch.tensor([[5.0, 0.0], [4.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
        >>> s.argmax(1).tolist(), sinkhorn_assign(s, temperature=1.0).tolist()
        ([0, 0, 0, 1], [0, 0, 1, 1])
    """
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2 or scores.shape[1] < 1:
        raise ValueError(
            f"scores must be a 2-D (M, k) tensor, got {tuple(getattr(scores, 'shape', ()))}"
        )
    temperature = check_fraction(temperature, "temperature", high=1e6)
    if temperature == 0:
        raise ValueError("temperature must be > 0")
    iters = check_positive_int(iters, "iters")
    m, k = scores.shape
    if m == 0:
        return torch.zeros(0, dtype=torch.long, device=scores.device)
    with torch.no_grad():
        log_q = scores.detach().float() / temperature
        for _ in range(iters):
            log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)
            log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(m)
        return log_q.argmax(dim=1)


class ClusterLabeler:
    """Pseudo-labels by balanced clustering of the outliers onto the k reject units.

    A :data:`rejectnet.losses.PseudoLabeler`: ``labeler(logits_out, num_classes)``
    returns ``(M,)`` targets in ``[C, C + k)``, from :func:`sinkhorn_assign` on the
    reject logits ``logits_out[:, C:]``.

    Args:
        temperature: Sinkhorn softness (see :func:`sinkhorn_assign`).
        iters: Sinkhorn iterations.

    Raises:
        ValueError: If an argument is out of range.

    Example:
        >>> import torch
        >>> from rejectnet.losses import SelfSupervisedRejectLoss
        >>> loss_fn = SelfSupervisedRejectLoss(3, 5.0, pseudo_labels=ClusterLabeler())
        >>> logits = torch.randn(10, 5)  # C = 3 classes + k = 2 reject units
        >>> targets = ClusterLabeler()(logits, 3)
        >>> bool(((targets >= 3) & (targets < 5)).all())
        True
    """

    def __init__(self, temperature: float = 1.0, iters: int = 3) -> None:
        sinkhorn_assign(torch.zeros(1, 1), temperature, iters)  # validates
        self.temperature = float(temperature)
        self.iters = int(iters)

    def __call__(self, logits_out: torch.Tensor, num_classes: int) -> torch.Tensor:
        """Targets ``(M,)`` in ``[C, C + k)`` for the outlier logits ``(M, C + k)``.

        Raises:
            ValueError: If ``logits_out`` has no reject columns beyond ``num_classes``.
        """
        if not isinstance(logits_out, torch.Tensor) or logits_out.ndim != 2:
            raise ValueError("logits_out must be a 2-D (M, C + k) tensor")
        if logits_out.shape[1] <= num_classes:
            raise ValueError(
                f"logits_out has {logits_out.shape[1]} columns, num_classes={num_classes}: "
                "no reject units to assign to"
            )
        cluster = sinkhorn_assign(logits_out[:, num_classes:], self.temperature, self.iters)
        return cluster + num_classes

    def __repr__(self) -> str:
        return f"ClusterLabeler(temperature={self.temperature}, iters={self.iters})"
