"""Checks of the data, the model and the objective before any weight changes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from rejectnet._batches import (
    BatchKeys,
    Inputs,
    call_model,
    extract_logits,
    inputs_to,
    split_inputs,
    take_rows,
)
from rejectnet._inference import eval_mode
from rejectnet.finetune.batching import (
    check_all_rows,
    check_outlier_bound,
    check_reiterable,
    check_rows_fit,
    single_input_hint,
)
from rejectnet.finetune.objectives import Objective, uses_outliers
from rejectnet.finetune.options import TrainOptions
from rejectnet.finetune.step import check_labels
from rejectnet.head import RejectHead

__all__ = ["Preflight", "check_labels", "preflight"]


@dataclass(frozen=True)
class Preflight:
    """What the checks found out.

    Attributes:
        num_classes: C, the number of in-distribution classes.
        reject_model: Whether the model has reject units (a :class:`RejectHead`).
        uses_outliers: Whether steps draw outlier rows (pool and/or signal).
    """

    num_classes: int
    reject_model: bool
    uses_outliers: bool


def _check_label_tensor(y: torch.Tensor | None, where: str) -> torch.Tensor:
    if y is None:
        raise ValueError(
            f"{where} batches must carry labels: (x, y) or a dict with a label key such as "
            "'y' or 'label'"
        )
    if y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
        raise ValueError(
            f"{where} labels must be a 1-D integer tensor of class indices, got dtype "
            f"{y.dtype} and shape {tuple(y.shape)}"
        )
    return y


def _first_call(model: nn.Module, x: Inputs, device: torch.device) -> Any:
    """The model on two rows; a dict the model cannot take by name says what to do."""
    try:
        return call_model(model, inputs_to(x, device))
    except TypeError as err:
        if not isinstance(x, dict):
            raise
        raise TypeError(
            f"the model refused the in_loader batch's named inputs ({err}). "
            + single_input_hint("in_loader", x)
        ) from err


def _dataset_labels(loader: Any) -> torch.Tensor | None:
    dataset = getattr(loader, "dataset", None)
    tensors = getattr(dataset, "tensors", None)
    labels = tensors[1] if isinstance(tensors, tuple) and len(tensors) > 1 else None
    if labels is None:
        labels = getattr(dataset, "targets", None)
    if isinstance(labels, (torch.Tensor, list, np.ndarray)):
        return torch.as_tensor(labels)
    return None


def preflight(
    model: nn.Module,
    objective: Objective,
    options: TrainOptions,
    device: torch.device,
    in_loader: Iterable[Any],
    outlier_loader: Iterable[Any] | None,
    *,
    keys: BatchKeys | None = None,
) -> Preflight:
    """Check everything that can be checked before the first weight changes.

    Labels are checked over the whole in-distribution data where that needs no pass
    over the images: a list or tuple of batches, or a loader whose dataset exposes its
    labels (``TensorDataset``, torchvision's ``targets``). Other loaders are checked on
    their first batch here and on every batch before its step.

    Args:
        model: The module to train.
        objective: The objective.
        options: The training options.
        device: The training device.
        in_loader: Labeled in-distribution batches.
        outlier_loader: Unlabeled outliers, or ``None``.

    Returns:
        What the fine-tuner needs to know about the model.

    Raises:
        TypeError: Loaders of the wrong kind (a bare tensor, a one-shot iterator,
            no length).
        ValueError: Empty loaders, missing or out-of-range labels, in- and outlier
            inputs of different shapes or dtypes, a model whose logits are not ``(N, C)``
            or ``(N, C + k)``, an objective for another C, or options this device cannot
            run.

    Torch's CPU RNG is forked for the checks: peeking at a shuffled loader's first batch
    draws its permutation seed, which must change neither the run nor, when the run is
    refused, the caller's RNG.
    """
    with torch.random.fork_rng(devices=[]):
        return _preflight(model, objective, options, device, in_loader, outlier_loader, keys)


def _preflight(
    model: nn.Module,
    objective: Objective,
    options: TrainOptions,
    device: torch.device,
    in_loader: Iterable[Any],
    outlier_loader: Iterable[Any] | None,
    keys: BatchKeys | None,
) -> Preflight:
    x_in, y = _first_batch(in_loader, keys)
    if options.amp == "fp16" and device.type != "cuda":
        raise ValueError("amp='fp16' needs a CUDA device; on CPU use amp=True (bfloat16)")
    wants_outliers = uses_outliers(objective)
    if wants_outliers:
        _check_outliers(x_in, in_loader, outlier_loader, options, keys)
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    if options.sync_batchnorm and distributed and device.type != "cuda":
        raise ValueError(
            "sync_batchnorm=True needs CUDA devices (torch's SyncBatchNorm does not run on "
            f"{device.type}); train on GPUs or pass sync_batchnorm=False"
        )
    num_classes = _num_classes(model, objective, x_in, device)
    _check_every_label(y, in_loader, num_classes, keys)
    return Preflight(num_classes, isinstance(model, RejectHead), wants_outliers)


def _first_batch(in_loader: Iterable[Any], keys: BatchKeys | None) -> tuple[Inputs, torch.Tensor]:
    """The first in-distribution batch's inputs and labels (a re-iterable, sized loader)."""
    check_reiterable(in_loader, "in_loader", "labeled in-distribution batches")
    try:
        n_batches = len(in_loader)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            "in_loader must have a length (a DataLoader over a map-style dataset or a list "
            "of batches), so that epochs and the cosine schedule are defined"
        ) from None
    first = next(iter(in_loader), None) if n_batches > 0 else None
    if first is None:
        raise ValueError("in_loader is empty; it needs at least one labeled batch")
    x_in, y = split_inputs(first, "in_loader batch", keys=keys)
    return x_in, _check_label_tensor(y, "in_loader")


def _check_outliers(
    x_in: Inputs,
    in_loader: Iterable[Any],
    outlier_loader: Iterable[Any] | None,
    options: TrainOptions,
    keys: BatchKeys | None,
) -> None:
    """Outliers come from somewhere, fit the in-distribution rows, and are not too many."""
    signal = options.outlier_signal
    if outlier_loader is None and signal is None:
        raise ValueError(
            "outlier_loader is required for this objective (or pass outlier_signal= from "
            "rejectnet.outliers to synthesise outliers without a pool)"
        )
    validate = getattr(signal, "validate", None)
    if callable(validate):
        validate(has_pool=outlier_loader is not None)
    if outlier_loader is not None:
        check_reiterable(outlier_loader, "outlier_loader", "unlabeled outliers")
        first_out = next(iter(outlier_loader), None)
        if first_out is None:
            raise ValueError("outlier_loader is empty; it needs unlabeled outliers")
        x_out, _ = split_inputs(first_out, "outlier_loader batch", keys=keys, labels=False)
        check_rows_fit(x_in, x_out, "first batch", dtype=True)
        check_all_rows(x_in, in_loader, outlier_loader, keys)
    check_outlier_bound(x_in, in_loader, options.outlier_ratio)


def _num_classes(model: nn.Module, objective: Objective, x_in: Inputs, device: torch.device) -> int:
    """C, from the model's logits on two rows (moved to ``device``), checked against
    the objective's."""
    model.to(device)
    with torch.no_grad(), eval_mode(model):
        logits = extract_logits(_first_call(model, take_rows(x_in, slice(0, 2)), device))
    expected = model.num_classes + model.k if isinstance(model, RejectHead) else 0
    width = int(logits.shape[-1]) if logits.ndim == 2 else -1
    if logits.ndim != 2 or (expected and width != expected):
        raise ValueError(
            f"the model returns logits of shape {tuple(logits.shape)}; expected (N, "
            f"{expected or 'C'})"
        )
    num_classes = model.num_classes if isinstance(model, RejectHead) else width
    wanted = getattr(objective, "num_classes", None)
    if isinstance(wanted, int) and wanted != num_classes:
        raise ValueError(
            f"the objective was built for num_classes={wanted} but the model has "
            f"C={num_classes} classes"
        )
    return num_classes


def _check_every_label(
    y: torch.Tensor, in_loader: Iterable[Any], num_classes: int, keys: BatchKeys | None
) -> None:
    """The first batch's labels, and every label that can be read without a pass."""
    check_labels(y, num_classes, "in_loader")
    labels = _dataset_labels(in_loader)
    if labels is not None:
        check_labels(labels, num_classes, "in_loader dataset")
    elif isinstance(in_loader, Sequence):
        for i, batch in enumerate(in_loader):
            _, yi = split_inputs(batch, f"in_loader batch {i}", keys=keys)
            yi = _check_label_tensor(yi, "in_loader")
            check_labels(yi, num_classes, f"in_loader batch {i}")
