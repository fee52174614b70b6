"""One training step: the batch assembled, checked, forwarded once and scored.

Everything done to a step's data lives here, in the order it happens:
:func:`step_batch` reads the user's in-distribution batch, checks its labels
(:func:`check_labels`) and draws the outlier rows; :func:`step_inputs` moves both parts to
the device and joins them (through the outlier signal when there is one);
:func:`forward_and_loss` runs ONE forward over the joined batch and the objective over
the split logits. The fine-tuner, :class:`~rejectnet.integrations.lightning.RejectNetModule`
and ``benchmarks/bench_step.py`` all call :func:`forward_and_loss`.

The optimiser side (backward, accumulation, clipping, scaling) is
``rejectnet.finetune.optim.OptimizerStep``; the statistics are
:mod:`rejectnet.finetune.stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from rejectnet._batches import BatchKeys, Inputs, batch_size, inputs_to, split_inputs
from rejectnet.finetune.batching import check_rows_fit, join_step_inputs, outlier_rows
from rejectnet.finetune.objectives import Objective, loss_terms
from rejectnet.finetune.options import AmpMode
from rejectnet.finetune.transfer import autocast, batch_to_device
from rejectnet.losses import LossTerms

__all__ = [
    "StepBatch",
    "StepOutput",
    "check_labels",
    "forward_and_loss",
    "step_batch",
    "step_inputs",
]


class _Outliers(Protocol):
    def take(self, n: int) -> Inputs: ...


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


def check_labels(y: torch.Tensor, num_classes: int, where: str) -> None:
    """Refuse labels outside ``[0, C)`` (CPU tensors only: no host sync on a device).

    Raises:
        ValueError: Naming ``where``, the labels' range and C.

    Example:
        >>> import torch
        >>> check_labels(torch.tensor([0, 2]), 3, "batch 1")
        >>> check_labels(torch.tensor([0, 3]), 3, "batch 2")
        Traceback (most recent call last):
        ...
        ValueError: batch 2 has labels in [0, 3] but the model has C=3 classes; ...
    """
    if y.numel() == 0 or y.device.type != "cpu":
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0 or hi >= num_classes:
        raise ValueError(
            f"{where} has labels in [{lo}, {hi}] but the model has C={num_classes} classes; "
            f"labels must be in [0, {num_classes - 1}]"
        )


def step_batch(
    batch: Any,
    *,
    step: int,
    num_classes: int,
    device: torch.device,
    keys: BatchKeys | None = None,
    outlier_ratio: float | None = None,
    outliers: _Outliers | None = None,
    pad_values: Mapping[str, int | float] | None = None,
) -> StepBatch:
    """Read one in-loader batch, check its labels and draw its outlier rows.

    Args:
        batch: What the in-distribution loader yielded (``(x, y)`` or a dict).
        step: The 1-based number of the optimizer step it feeds (for messages).
        num_classes: C; labels must lie in ``[0, C)``.
        device: The training device (the labels are moved there).
        keys: ``(input_key, label_key)`` of dict batches, or ``None``.
        outlier_ratio: Outlier rows per in-distribution row, or ``None`` when the
            objective uses no outliers.
        outliers: Where the pool's outlier rows come from (``take(n)``), or ``None``.
        pad_values: Pad value per input name (named token sequences).

    Raises:
        ValueError: If the batch carries no labels, a label is outside ``[0, C)``, or
            the outlier rows do not fit the in-distribution rows.
    """
    x_in, y = split_inputs(batch, "in_loader batch", keys=keys)
    if y is None:
        raise ValueError("in_loader batches must carry labels")
    check_labels(y, num_classes, f"in_loader batch at step {step}")
    n_in = batch_size(x_in, "in_loader batch")
    m = outlier_rows(outlier_ratio, n_in) if outlier_ratio is not None else 0
    x_out = None
    if outliers is not None:
        x_out = outliers.take(m)
        check_rows_fit(x_in, x_out, f"step {step}")
    return StepBatch(x_in, y.to(device), x_out, m, pad_values)


def step_inputs(
    batch: StepBatch, device: torch.device, *, signal: Any = None, channels_last: bool = False
) -> Inputs:
    """``[x_in; x_out]`` on ``device``, ready for the one forward pass.

    Named tensors are padded to one length, then moved; tensors are moved (non-blocking
    from pinned memory on CUDA), then joined. With an outlier ``signal`` the outlier rows
    are the signal's ``outlier_batch`` of ``x_in`` and the pool.

    Example:
        >>> import torch
        >>> b = StepBatch(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long),
        ...               torch.ones(4, 3), 4)
        >>> step_inputs(b, torch.device("cpu")).shape
        torch.Size([6, 3])
    """
    if isinstance(batch.x_in, dict):  # named tensors: pad to one length, then move
        if signal is None:
            x = join_step_inputs(batch.x_in, batch.x_out, batch.pad_values)
            return inputs_to(x, device, non_blocking=device.type == "cuda")
        x_in = inputs_to(batch.x_in, device)
        pool = inputs_to(batch.x_out, device) if batch.x_out is not None else None
        x_out = signal.outlier_batch(x_in, batch.y, pool, batch.num_outliers)
        return join_step_inputs(x_in, x_out, batch.pad_values)
    if signal is None:
        assert batch.x_out is None or isinstance(batch.x_out, torch.Tensor)
        parts = [batch.x_in] if batch.x_out is None else [batch.x_in, batch.x_out]
        return batch_to_device(parts, device, channels_last=channels_last)
    x_in_t = batch_to_device([batch.x_in], device, channels_last=channels_last)
    pool_t = None
    if batch.x_out is not None:
        assert isinstance(batch.x_out, torch.Tensor)
        pool_t = batch_to_device([batch.x_out], device, channels_last=channels_last)
    out_t = signal.outlier_batch(x_in_t, batch.y, pool_t, batch.num_outliers)
    return x_in_t if out_t is None else torch.cat([x_in_t, out_t.to(x_in_t.dtype)])


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

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet.losses import SelfSupervisedRejectLoss
        >>> b = StepBatch(torch.randn(4, 8), torch.randint(0, 3, (4,)), torch.randn(20, 8), 20)
        >>> out = forward_and_loss(nn.Linear(8, 5), SelfSupervisedRejectLoss(3), b,
        ...                        device=torch.device("cpu"), amp=False)
        >>> out.logits_in.shape, out.logits_out.shape, out.terms.loss.ndim
        (torch.Size([4, 5]), torch.Size([20, 5]), 0)
    """
    n_in = batch_size(batch.x_in)
    x = step_inputs(batch, device, signal=signal, channels_last=channels_last)
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
