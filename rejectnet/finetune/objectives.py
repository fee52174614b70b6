"""The objective protocol: what a fine-tuner minimises.

An objective is any callable ``(logits_in, targets, logits_out) -> scalar loss`` taking
the logits of ONE forward pass over ``[x_in; x_out]``, split into the labeled
in-distribution rows and the outlier rows (``None`` when the run has no outliers). The
losses of :mod:`rejectnet.losses` are objectives; so is any ``nn.Module`` or function
with that call. Two optional attributes refine what the fine-tuner does with it:

- ``uses_outliers`` (default ``True``): whether it needs outlier rows; ``False`` makes
  the fine-tuner run plain supervised steps (no outlier batch is drawn).
- ``terms(logits_in, targets, logits_out)`` returning a
  :class:`~rejectnet.losses.LossTerms`: lets the epoch statistics report the
  in-distribution and outlier parts of the loss separately.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from rejectnet.losses import LossTerms

__all__ = ["Objective", "loss_terms", "uses_outliers"]


@runtime_checkable
class Objective(Protocol):
    """``(logits_in, targets, logits_out) -> scalar loss``; see the module docstring."""

    def __call__(
        self, logits_in: torch.Tensor, targets: torch.Tensor, logits_out: torch.Tensor | None
    ) -> torch.Tensor:
        """The scalar loss of one step."""
        ...


def uses_outliers(objective: Objective) -> bool:
    """Whether ``objective`` wants outlier rows (its ``uses_outliers``, default ``True``)."""
    return bool(getattr(objective, "uses_outliers", True))


def loss_terms(
    objective: Objective,
    logits_in: torch.Tensor,
    targets: torch.Tensor,
    logits_out: torch.Tensor | None,
) -> LossTerms:
    """Call ``objective`` once, returning its loss and (when it reports them) its parts.

    Args:
        objective: The objective.
        logits_in: Logits of the labeled rows.
        targets: Their class indices.
        logits_out: Logits of the outlier rows, or ``None``.

    Returns:
        :class:`~rejectnet.losses.LossTerms`; ``in_loss`` is the detached total and
        ``out_loss`` ``None`` for an objective without a ``terms`` method.

    Raises:
        TypeError: If the objective does not return a scalar tensor.
    """
    terms = getattr(objective, "terms", None)
    if callable(terms):
        out = terms(logits_in, targets, logits_out)
        if isinstance(out, LossTerms):
            return out
    loss = objective(logits_in, targets, logits_out)
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise TypeError(
            "the objective must return a scalar (0-d) tensor loss, got "
            f"{getattr(loss, 'shape', type(loss).__name__)}"
        )
    return LossTerms(loss, loss.detach(), None)
