"""A training step's batch, assembled in one place.

Everything the fine-tuner, :class:`~rejectnet.integrations.OutlierPairs` and the
Lightning module do to the user's batches before the forward pass lives here: refusing
loaders that cannot be read again every epoch, the number of outlier rows a step asks
for (bounded), and the check that the outlier rows fit the in-distribution rows of the
one forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from rejectnet._batches import (
    INPUT_KEYS,
    LABEL_KEYS,
    BatchKeys,
    Inputs,
    batch_size,
    cat_inputs,
    pad_values_for,
    split_inputs,
)
from rejectnet.finetune.options import MAX_OUTLIER_ROWS

__all__ = [
    "check_all_rows",
    "check_outlier_bound",
    "check_reiterable",
    "check_rows_fit",
    "join_step_inputs",
    "outlier_rows",
    "pad_values_of",
    "sequence_inputs",
    "single_input_hint",
]


def check_reiterable(loader: Any, name: str, what: str) -> None:
    """Refuse what cannot be read once per epoch: a tensor, a non-iterable, an iterator.

    Args:
        loader: The user's loader.
        name: Its argument name, for the message.
        what: What it should hold (``"labeled in-distribution batches"``).

    Raises:
        TypeError: Naming the argument and what to pass instead.

    Example:
        >>> check_reiterable([1, 2], "in_loader", "batches")
        >>> check_reiterable(iter([1, 2]), "in_loader", "batches")
        Traceback (most recent call last):
        ...
        TypeError: in_loader is a one-shot iterator (list_iterator); ...
    """
    if isinstance(loader, torch.Tensor):
        raise TypeError(
            f"{name} is a single tensor of shape {tuple(loader.shape)}, but {name} must be an "
            "iterable of batches: iterating a tensor would yield its rows one by one. Pass "
            "batches: [x] for one batch, or "
            f"DataLoader(TensorDataset(x), batch_size=...) ({what})"
        )
    if isinstance(loader, (str, bytes)) or not hasattr(loader, "__iter__"):
        raise TypeError(
            f"{name} must be an iterable of batches (a DataLoader or a list), got "
            f"{type(loader).__name__}"
        )
    if isinstance(loader, Iterator):
        raise TypeError(
            f"{name} is a one-shot iterator ({type(loader).__name__}); it must be re-iterable "
            "because it is read again every epoch (or restarted when exhausted): pass a "
            "DataLoader over a map-style dataset or a list of batches (list(generator) "
            "materialises a generator)"
        )


def outlier_rows(ratio: float, n_in: int, name: str = "outlier_ratio") -> int:
    """Outlier rows of a step with ``n_in`` rows: ``max(1, round(ratio * n_in))``, bounded.

    Bounded by :data:`~rejectnet.finetune.options.MAX_OUTLIER_ROWS`, so that a ratio
    typed with a few zeros too many is refused before any memory is taken.

    Raises:
        ValueError: Naming ``name``, the batch size and the bound, when the step would
            ask for more than ``MAX_OUTLIER_ROWS`` rows.

    Example:
        >>> outlier_rows(5.0, 64)
        320
    """
    m = max(1, round(ratio * n_in))
    if m > MAX_OUTLIER_ROWS:
        raise ValueError(
            f"{name}={ratio:g} times the in-distribution batch of {n_in} rows asks for {m:,} "
            f"outlier rows per step; at most {MAX_OUTLIER_ROWS:,} are allowed (the paper uses "
            f"5): lower {name} or the batch size"
        )
    return m


def check_outlier_bound(
    x_in: Inputs, in_loader: Any, ratio: float, name: str = "outlier_ratio"
) -> None:
    """Refuse, before the first step, a ratio whose steps would ask for too many rows.

    The in-distribution batch is the loader's ``batch_size`` or the first batch's rows,
    whichever is larger (:func:`outlier_rows` raises, naming ``name``).
    """
    batch = getattr(in_loader, "batch_size", None)
    n_in = max(batch_size(x_in), batch if isinstance(batch, int) else 0)
    outlier_rows(ratio, n_in, name)


def check_all_rows(
    x_in: Inputs, in_loader: Any, outlier_loader: Any, keys: BatchKeys | None
) -> None:
    """Every in-memory batch of both loaders fits the first in-distribution batch.

    Only batches that can be read without a pass over the data are checked (a list of
    batches, a ``DataLoader`` over a ``TensorDataset``: :func:`sequence_inputs`).
    """
    for name, loader, labels in (
        ("in_loader", in_loader, True),
        ("outlier_loader", outlier_loader, False),
    ):
        for i, batch in enumerate(sequence_inputs(loader) or []):
            x, _ = split_inputs(batch, f"{name} batch {i}", keys=keys, labels=labels)
            check_rows_fit(x_in, x, f"batch {i}, found before the first step", other=name)


def check_rows_fit(
    x_in: Inputs,
    x_out: Inputs,
    where: str,
    *,
    dtype: bool = False,
    other: str = "outlier_loader",
) -> None:
    """Refuse outlier rows that cannot share one forward pass with ``x_in``.

    Named tensors (dicts) must carry the same names, and each name the same shape
    beyond dimension 1: token sequences of different lengths are padded by
    :func:`rejectnet._batches.cat_inputs`, never truncated.

    Args:
        x_in: In-distribution inputs ``(N, ...)`` (a tensor or named tensors).
        x_out: Outlier inputs ``(M, ...)``.
        where: What to name in the message (``"step 3"``, ``"outlier_loader batch 2"``).
        dtype: Also require the same dtype.
        other: The loader ``x_out`` came from, for the message.

    Raises:
        TypeError: If one side is a tensor and the other named tensors.
        ValueError: Naming both shapes (or dtypes, or the missing key) and ``where``.
    """
    first = "in_loader" if other != "in_loader" else "in_loader's first batch"
    if isinstance(x_in, dict) or isinstance(x_out, dict):
        _check_named_rows_fit(x_in, x_out, where, dtype=dtype, other=other)
        return
    if tuple(x_out.shape[1:]) != tuple(x_in.shape[1:]):
        raise ValueError(
            f"{first} inputs have shape {tuple(x_in.shape[1:])} per sample but {other} "
            f"inputs have {tuple(x_out.shape[1:])} ({where}); both go through one "
            "forward pass: resize or crop the outliers to the in-distribution input shape"
        )
    if dtype and x_out.dtype != x_in.dtype:
        raise ValueError(
            f"in_loader inputs are {x_in.dtype} but {other} inputs are "
            f"{x_out.dtype} ({where}); apply the same transform to both"
        )


def _check_named_rows_fit(
    x_in: Inputs, x_out: Inputs, where: str, *, dtype: bool, other: str
) -> None:
    if not (isinstance(x_in, dict) and isinstance(x_out, dict)):
        named = x_in if isinstance(x_in, dict) else x_out
        assert isinstance(named, dict)
        owner = "in_loader" if isinstance(x_in, dict) else other
        raise TypeError(
            f"in_loader inputs are {_kind(x_in)} but {other} inputs are {_kind(x_out)} "
            f"({where}); both go through one forward pass: give both the same kind of "
            f"batch. {single_input_hint(owner, named)}"
        )
    missing = [k for k in x_in if k not in x_out] + [k for k in x_out if k not in x_in]
    if missing:
        raise ValueError(
            f"key {missing[0]!r} is in {'in_loader' if missing[0] in x_in else other} "
            f"batches but not in {other if missing[0] in x_in else 'in_loader'} batches "
            f"({where}); both go through one forward pass, so they need the same input names "
            f"(got {list(x_in)} and {list(x_out)})"
        )
    for k, a in x_in.items():
        b = x_out[k]
        if a.ndim != b.ndim or tuple(a.shape[2:]) != tuple(b.shape[2:]):
            raise ValueError(
                f"in_loader inputs[{k!r}] have shape {tuple(a.shape[1:])} per sample but "
                f"{other} inputs[{k!r}] have {tuple(b.shape[1:])} ({where}); only the "
                "sequence length (dimension 1) may differ (it is padded)"
            )
        if dtype and a.dtype != b.dtype:
            raise ValueError(
                f"in_loader inputs[{k!r}] are {a.dtype} but {other} inputs[{k!r}] are "
                f"{b.dtype} ({where}); encode both the same way"
            )


def single_input_hint(owner: str, named: Mapping[str, Any]) -> str:
    """How to make a dict batch read as one input tensor, for an error message."""
    first = next(iter(named), "x")
    return (
        f"The {owner} batch holds the named inputs {list(named)} (passed to the model by "
        f"name); for one input tensor use one of {list(INPUT_KEYS)} as its key (labels "
        f"under one of {list(LABEL_KEYS)}), or name yours with keys=(input_key, "
        f"label_key), e.g. keys=({first!r}, 'y')"
    )


def _kind(x: Inputs) -> str:
    return "named tensors (a dict)" if isinstance(x, dict) else "one tensor"


def pad_values_of(model: nn.Module) -> dict[str, int]:
    """:func:`rejectnet._batches.pad_values_for` of the module that holds a ``config``.

    A :class:`~rejectnet.RejectHead` or a ``DistributedDataParallel`` wrapper holds the
    Hugging Face model (and its ``config.pad_token_id``) inside; the first module with a
    ``config`` that has ``pad_token_id`` decides.

    Example:
        >>> from torch import nn
        >>> pad_values_of(nn.Linear(2, 2))["input_ids"]
        0
    """
    for module in model.modules():
        if hasattr(getattr(module, "config", None), "pad_token_id"):
            return pad_values_for(module)
    return pad_values_for(model)


def join_step_inputs(
    x_in: Inputs, x_out: Inputs | None, pad_values: Mapping[str, int | float] | None
) -> Inputs:
    """``[x_in; x_out]`` for one forward pass (named tensors right-padded to one length).

    Example:
        >>> import torch
        >>> a = {"input_ids": torch.ones(1, 3, dtype=torch.long)}
        >>> b = {"input_ids": torch.ones(2, 5, dtype=torch.long)}
        >>> join_step_inputs(a, b, {"input_ids": 0})["input_ids"].shape
        torch.Size([3, 5])
    """
    if x_out is None:
        return x_in
    if isinstance(x_in, torch.Tensor) and isinstance(x_out, torch.Tensor):
        return torch.cat([x_in, x_out.to(x_in.dtype)])
    return cat_inputs([x_in, x_out], pad_values=pad_values, name="in_loader and outlier inputs")


def sequence_inputs(loader: Any) -> list[Any] | None:
    """The batches of a loader that holds them in memory (a list or tuple), else ``None``.

    A ``DataLoader`` over a ``TensorDataset`` gives one batch-like view of its first
    tensor (every row has that tensor's shape), so its rows can be checked without a
    pass over the data.
    """
    if isinstance(loader, Sequence) and not isinstance(loader, (str, bytes)):
        return list(loader)
    tensors = getattr(getattr(loader, "dataset", None), "tensors", None)
    if isinstance(tensors, tuple) and tensors and isinstance(tensors[0], torch.Tensor):
        return [tensors[0][:1]]
    return None
