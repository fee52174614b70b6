"""One training step: Algorithm 1's forward and loss, on one screen.

The optimiser side (backward, accumulation, clipping, scaling) is
:class:`~rejectnet.finetune.optim.OptimizerStep`; the statistics are
:mod:`rejectnet.finetune.stats`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from rejectnet.finetune.objectives import Objective, loss_terms
from rejectnet.finetune.options import AmpMode
from rejectnet.finetune.transfer import autocast, batch_to_device
from rejectnet.losses import LossTerms

__all__ = ["StepBatch", "StepOutput", "forward_and_loss"]


@dataclass
class StepBatch:
    """One step's data, still where the loader put it.

    Attributes:
        x_in: Labeled in-distribution inputs ``(N, ...)``.
        y: Their labels ``(N,)``, already on the training device.
        x_out: Outlier inputs ``(M, ...)`` from the pool, or ``None``.
        num_outliers: How many outlier rows the step should forward
            (``round(outlier_ratio * N)``; the signal synthesises them without a pool).
    """

    x_in: torch.Tensor
    y: torch.Tensor
    x_out: torch.Tensor | None
    num_outliers: int


@dataclass
class StepOutput:
    """What a step produced: the loss terms and the split logits (for statistics)."""

    terms: LossTerms
    logits_in: torch.Tensor
    logits_out: torch.Tensor | None


def forward_and_loss(
    forward: Callable[[torch.Tensor], torch.Tensor],
    objective: Objective,
    batch: StepBatch,
    *,
    device: torch.device,
    amp: AmpMode,
    signal: Any = None,
    channels_last: bool = False,
) -> StepOutput:
    """ONE forward over ``[x_in; x_out]`` (batch-norm sees both), then the objective.

    Args:
        forward: ``x -> logits`` (the model, or its DDP wrapper, in train mode).
        objective: ``(logits_in, y, logits_out) -> loss``.
        batch: The step's data.
        device: The training device.
        amp: Mixed-precision mode.
        signal: Optional outlier signal: makes the outlier rows from ``x_in`` and the
            pool (``outlier_batch``) and adds virtual outliers computed through the head
            from this same forward (``extra_outlier_logits``).
        channels_last: Feed 4-D inputs in the ``channels_last`` memory format.

    Returns:
        The loss terms and the split logits.
    """
    n_in = int(batch.x_in.shape[0])
    if signal is None:
        parts = [batch.x_in] if batch.x_out is None else [batch.x_in, batch.x_out]
        x = batch_to_device(parts, device, channels_last=channels_last)
    else:
        x_in = batch_to_device([batch.x_in], device, channels_last=channels_last)
        x_out = None
        if batch.x_out is not None:
            x_out = batch_to_device([batch.x_out], device, channels_last=channels_last)
        x_out = signal.outlier_batch(x_in, batch.y, x_out, batch.num_outliers)
        x = x_in if x_out is None else torch.cat([x_in, x_out.to(x_in.dtype)])
    with autocast(amp, device):
        logits = forward(x)
        logits_in = logits[:n_in]
        logits_out = logits[n_in:] if logits.shape[0] > n_in else None
        if signal is not None:
            extra = signal.extra_outlier_logits(n_in, batch.y)
            if extra is not None:
                extra = extra.to(logits.dtype)
                logits_out = extra if logits_out is None else torch.cat([logits_out, extra])
        terms = loss_terms(objective, logits_in, batch.y, logits_out)
    return StepOutput(terms, logits_in, logits_out)
