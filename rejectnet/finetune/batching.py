"""A training step's batch, assembled in one place.

Everything the fine-tuner, :class:`~rejectnet.integrations.OutlierPairs` and the
Lightning module do to the user's batches before the forward pass lives here: refusing
loaders that cannot be read again every epoch, the number of outlier rows a step asks
for (bounded), and the check that the outlier rows fit the in-distribution rows of the
one forward pass.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch

from rejectnet.finetune.options import MAX_OUTLIER_ROWS

__all__ = [
    "check_reiterable",
    "check_rows_fit",
    "outlier_rows",
    "sequence_inputs",
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


def check_rows_fit(
    x_in: torch.Tensor,
    x_out: torch.Tensor,
    where: str,
    *,
    dtype: bool = False,
    other: str = "outlier_loader",
) -> None:
    """Refuse outlier rows that cannot share one forward pass with ``x_in``.

    Args:
        x_in: In-distribution inputs ``(N, ...)``.
        x_out: Outlier inputs ``(M, ...)``.
        where: What to name in the message (``"step 3"``, ``"outlier_loader batch 2"``).
        dtype: Also require the same dtype.
        other: The loader ``x_out`` came from, for the message.

    Raises:
        ValueError: Naming both shapes (or dtypes) and ``where``.
    """
    first = "in_loader" if other != "in_loader" else "in_loader's first batch"
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
