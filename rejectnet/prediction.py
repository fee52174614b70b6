"""The typed result of :meth:`rejectnet.RejectHead.predict`."""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["REJECTED", "Prediction"]

REJECTED = -1
"""The label :meth:`~rejectnet.RejectHead.predict` gives a rejected (OOD) input."""


@dataclass(frozen=True)
class Prediction:
    """What :meth:`rejectnet.RejectHead.predict` returns for a batch of N inputs.

    Attributes:
        labels: ``(N,)`` int64 class indices in ``[0, C)``, or ``-1`` (:data:`REJECTED`)
            where the input was judged out-of-distribution.
        classes: ``(N,)`` int64 arg-max over the C class logits, even for rejected inputs.
        probs: ``(N, C)`` softmax over the C class logits alone (each row sums to 1).
        ood_score: ``(N,)`` the OOD score (higher = more likely OOD).
        is_ood: ``(N,)`` bool, ``ood_score > threshold``.
        threshold: The threshold that was applied.
        score: The name of the score that was computed.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import REJECTED, RejectHead
        >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
        >>> net.set_threshold(1.0)  # sum_reject <= 1 always: nothing is rejected
        >>> pred = net.predict(torch.randn(4, 8))
        >>> len(pred), bool(pred.accepted.all()), bool((pred.labels == REJECTED).any())
        (4, True, False)
        >>> torch.equal(pred.labels, pred.classes), pred.score
        (True, 'sum_reject')
    """

    labels: torch.Tensor
    classes: torch.Tensor
    probs: torch.Tensor
    ood_score: torch.Tensor
    is_ood: torch.Tensor
    threshold: float
    score: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def accepted(self) -> torch.Tensor:
        """``(N,)`` bool, the inputs that were classified rather than rejected."""
        return ~self.is_ood
