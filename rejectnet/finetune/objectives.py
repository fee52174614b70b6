"""The three training objectives that share one loop.

Each objective gets the logits of ONE forward pass over the concatenated batch
``[x_in; x_out]`` already split into ``logits_in`` and ``logits_out`` (``None`` for plain
supervised training) and returns the loss plus on-device statistics. No objective
synchronises with the host or modifies its inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "CrossEntropyObjective",
    "Objective",
    "OutlierExposureObjective",
    "SelfSupervisedObjective",
    "StepOutput",
    "pseudo_labels",
]


@dataclass
class StepOutput:
    """Loss and on-device statistics of one training step."""

    loss: torch.Tensor
    in_loss: torch.Tensor
    out_loss: torch.Tensor | None
    in_correct: torch.Tensor
    out_on_reject: torch.Tensor | None


def pseudo_labels(
    logits_out: torch.Tensor, num_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """The paper's Algorithm 1 pseudo-labels for outlier logits of shape ``(M, C + k)``.

    If the argmax over all C + k outputs is a reject unit, that unit is the target;
    otherwise a uniformly random reject unit is. Computed on the logits' device with no
    host synchronisation and without modifying ``logits_out``.

    Args:
        logits_out: Outlier logits ``(M, C + k)``.
        num_classes: C, the number of in-distribution classes.
        generator: Optional RNG for the random reject units (on the logits' device).

    Returns:
        ``(M,)`` int64 targets in ``[C, C + k)``.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[0.0, 0.0, 5.0, 1.0], [9.0, 0.0, 1.0, 2.0]])
        >>> t = pseudo_labels(logits, num_classes=2)
        >>> int(t[0]), int(t[1]) in (2, 3)
        (2, True)
    """
    k = logits_out.shape[-1] - num_classes
    with torch.no_grad():
        argmax = logits_out.argmax(dim=-1)
        random = torch.randint(
            num_classes,
            num_classes + k,
            argmax.shape,
            device=logits_out.device,
            generator=generator,
        )
        return torch.where(argmax >= num_classes, argmax, random)


class Objective:
    """Base class: an objective maps split logits and labels to a :class:`StepOutput`."""

    uses_outliers = True

    def __call__(
        self, logits_in: torch.Tensor, y: torch.Tensor, logits_out: torch.Tensor | None
    ) -> StepOutput:
        raise NotImplementedError


def _in_terms(
    logits_in: torch.Tensor, y: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    loss = F.cross_entropy(logits_in.float(), y)
    correct = (logits_in[:, :num_classes].argmax(dim=-1) == y).sum()
    return loss, correct


class CrossEntropyObjective(Objective):
    """Plain supervised cross-entropy (stage one)."""

    uses_outliers = False

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes

    def __call__(
        self, logits_in: torch.Tensor, y: torch.Tensor, logits_out: torch.Tensor | None
    ) -> StepOutput:
        loss, correct = _in_terms(logits_in, y, self.num_classes)
        return StepOutput(loss, loss.detach(), None, correct, None)


class SelfSupervisedObjective(Objective):
    """``CE(in, y) + lam * CE(out, pseudo_labels(out))`` over all C + k outputs."""

    def __init__(
        self, num_classes: int, lam: float, generator: torch.Generator | None = None
    ) -> None:
        self.num_classes = num_classes
        self.lam = lam
        self.generator = generator

    def __call__(
        self, logits_in: torch.Tensor, y: torch.Tensor, logits_out: torch.Tensor | None
    ) -> StepOutput:
        assert logits_out is not None
        in_loss, correct = _in_terms(logits_in, y, self.num_classes)
        target = pseudo_labels(logits_out.detach(), self.num_classes, self.generator)
        out_loss = F.cross_entropy(logits_out.float(), target)
        on_reject = (logits_out.detach().argmax(dim=-1) >= self.num_classes).sum()
        loss = in_loss + self.lam * out_loss
        return StepOutput(loss, in_loss.detach(), out_loss.detach(), correct, on_reject)


class OutlierExposureObjective(Objective):
    """Outlier Exposure (Hendrycks et al. 2018) on a plain C-class model.

    ``CE(in, y) + lam * mean_over_outliers(CE(out, uniform))``, where the cross-entropy
    to the uniform distribution is ``-mean_c log_softmax(z)_c``.
    """

    def __init__(self, num_classes: int, lam: float) -> None:
        self.num_classes = num_classes
        self.lam = lam

    def __call__(
        self, logits_in: torch.Tensor, y: torch.Tensor, logits_out: torch.Tensor | None
    ) -> StepOutput:
        assert logits_out is not None
        in_loss, correct = _in_terms(logits_in, y, self.num_classes)
        out_loss = -torch.log_softmax(logits_out.float(), dim=-1).mean(dim=-1).mean()
        loss = in_loss + self.lam * out_loss
        return StepOutput(loss, in_loss.detach(), out_loss.detach(), correct, None)
