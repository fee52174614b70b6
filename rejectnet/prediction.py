"""The typed result of :meth:`rejectnet.RejectHead.predict`."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

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
        ood_score: ``(N,)`` the OOD score (higher = more likely OOD).
        is_ood: ``(N,)`` bool, ``ood_score > threshold``.
        threshold: The threshold that was applied.
        score: The name of the score that was computed.
        class_logits: ``(N, C)`` the class logits (before the temperature).
        temperature: The temperature the scores and :attr:`probs` use.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import REJECTED, RejectHead
        >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2).eval()
        >>> net.set_threshold(1.5)  # sum_reject <= 1 always: nothing is rejected
        >>> pred = net.predict(torch.randn(4, 8))
        >>> len(pred), bool(pred.accepted.all()), bool((pred.labels == REJECTED).any())
        (4, True, False)
        >>> torch.equal(pred.labels, pred.classes), pred.score
        (True, 'sum_reject')
        >>> pred.probs.sum(dim=1).allclose(torch.ones(4))
        True
    """

    labels: torch.Tensor
    classes: torch.Tensor
    ood_score: torch.Tensor
    is_ood: torch.Tensor
    threshold: float
    score: str
    class_logits: torch.Tensor = field(repr=False)
    temperature: float = 1.0

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @cached_property
    def probs(self) -> torch.Tensor:
        """``(N, C)`` softmax over the C class logits divided by the temperature.

        Each row sums to 1. Computed on first access (predict does not pay for it
        when only the decisions are used), in float32 (float64 for a float64 model).
        """
        z = self.class_logits
        dt = torch.float64 if z.dtype == torch.float64 else torch.float32
        z = z.to(dt)
        if self.temperature != 1.0:
            z = z / self.temperature
        return torch.softmax(z, dim=-1)

    @property
    def accepted(self) -> torch.Tensor:
        """``(N,)`` bool, the inputs that were classified rather than rejected."""
        return ~self.is_ood
