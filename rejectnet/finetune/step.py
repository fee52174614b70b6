"""One training step: Algorithm 1's forward and loss, on one screen.

The optimiser side (backward, accumulation, clipping, scaling) is
:class:`~rejectnet.finetune.optim.OptimizerStep`; the statistics are
:mod:`rejectnet.finetune.stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from rejectnet._batches import Inputs, batch_size, inputs_to
from rejectnet.finetune.batching import join_step_inputs
from rejectnet.finetune.objectives import Objective, loss_terms
from rejectnet.finetune.options import AmpMode
from rejectnet.finetune.transfer import autocast, batch_to_device
from rejectnet.losses import LossTerms

__all__ = ["StepBatch", "StepOutput", "forward_and_loss"]


@dataclass
class StepBatch:
    """One step's data, still where the loader put it.

    Attributes:
        x_in: Labeled in-distribution inputs ``(N, ...)``: a tensor, or named tensors.
        y: Their labels ``(N,)``, already on the training device.
        x_out: Outlier inputs ``(M, ...)`` from the pool (the same kind as ``x_in``),
            or ``None``.
        num_outliers: How many outlier rows the step should forward
            (``round(outlier_ratio * N)``; the signal synthesises them without a pool).
        pad_values: Pad value per input name, for named token sequences of different
            lengths (:func:`rejectnet._batches.pad_values_for`).
    """

    x_in: Inputs
    y: torch.Tensor
    x_out: Inputs | None
    num_outliers: int
    pad_values: Mapping[str, int | float] | None = None


@dataclass
class StepOutput:
    """What a step produced: the loss terms and the split logits (for statistics)."""

    terms: LossTerms
    logits_in: torch.Tensor
    logits_out: torch.Tensor | None


def forward_and_loss(
    forward: Callable[[Inputs], torch.Tensor],
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
        forward: ``x -> logits`` (the model, or its DDP wrapper, in train mode; named
            inputs as keyword arguments).
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
    n_in = batch_size(batch.x_in)
    x: Inputs
    if isinstance(batch.x_in, dict):  # named tensors: pad to one length, then move
        if signal is None:
            x = join_step_inputs(batch.x_in, batch.x_out, batch.pad_values)
            x = inputs_to(x, device, non_blocking=device.type == "cuda")
        else:
            x_in = inputs_to(batch.x_in, device)
            pool = inputs_to(batch.x_out, device) if batch.x_out is not None else None
            x_out = signal.outlier_batch(x_in, batch.y, pool, batch.num_outliers)
            x = join_step_inputs(x_in, x_out, batch.pad_values)
    elif signal is None:
        assert batch.x_out is None or isinstance(batch.x_out, torch.Tensor)
        parts = [batch.x_in] if batch.x_out is None else [batch.x_in, batch.x_out]
        x = batch_to_device(parts, device, channels_last=channels_last)
    else:
        x_in_t = batch_to_device([batch.x_in], device, channels_last=channels_last)
        pool_t = None
        if batch.x_out is not None:
            assert isinstance(batch.x_out, torch.Tensor)
            pool_t = batch_to_device([batch.x_out], device, channels_last=channels_last)
        out_t = signal.outlier_batch(x_in_t, batch.y, pool_t, batch.num_outliers)
        x = x_in_t if out_t is None else torch.cat([x_in_t, out_t.to(x_in_t.dtype)])
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
