"""Reading the batches that users' data loaders yield.

A batch may be a bare tensor, a tuple or list ``(x,)`` / ``(x, y, ...)``, or a mapping
with an input key (``"x"``, ``"image"``, ``"images"``, ``"pixel_values"``, ``"input"``,
``"inputs"``) and optionally a label key (``"y"``, ``"label"``, ``"labels"``,
``"target"``, ``"targets"``). Mappings with other key names are read with
``keys=("img", "cls")`` (the input key, then the label key or ``None``), which
:meth:`rejectnet.RejectHead.calibrate` and :meth:`~rejectnet.RejectHead.fit_temperature`
accept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["INPUT_KEYS", "LABEL_KEYS", "BatchKeys", "check_keys", "split_batch"]

INPUT_KEYS = ("x", "image", "images", "pixel_values", "input", "inputs")
"""The input keys looked for, in this order, in a mapping batch."""
LABEL_KEYS = ("y", "label", "labels", "target", "targets")
"""The label keys looked for, in this order, in a mapping batch."""

BatchKeys = tuple[str, "str | None"]
"""``(input_key, label_key)`` of mapping batches; ``label_key`` may be ``None``."""


def check_keys(keys: Any, name: str = "keys") -> BatchKeys | None:
    """Validate a ``keys=(input_key, label_key)`` argument (``None`` = the defaults).

    Raises:
        TypeError: If ``keys`` is not ``None`` or a pair ``(str, str | None)``.

    Example:
        >>> check_keys(("img", "cls"))
        ('img', 'cls')
    """
    if keys is None:
        return None
    if (
        not isinstance(keys, tuple)
        or len(keys) != 2
        or not isinstance(keys[0], str)
        or not (keys[1] is None or isinstance(keys[1], str))
    ):
        raise TypeError(
            f"{name} must be a pair (input_key, label_key) of dict keys, label_key may be "
            f"None, e.g. ('img', 'cls'); got {keys!r:.100}"
        )
    return keys[0], keys[1]


def split_batch(
    batch: Any,
    name: str = "batch",
    *,
    keys: BatchKeys | None = None,
    labels: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a loader batch into inputs and (optional) labels.

    Args:
        batch: What the data loader yielded.
        name: What to call the batch in error messages (e.g. ``"outlier_loader batch"``).
        keys: ``(input_key, label_key)`` for mapping batches with other key names than
            :data:`INPUT_KEYS` / :data:`LABEL_KEYS`; ``label_key`` may be ``None``.
        labels: Whether the caller uses labels. When ``False`` they are not read at all
            (so labels of any type, e.g. strings, are ignored) and ``y`` is ``None``.

    Returns:
        ``(x, y)`` where ``y`` is ``None`` when the batch carries no labels.

    Raises:
        TypeError: If the batch has none of the accepted forms (the message lists the
            accepted keys of a mapping batch and how to name others).

    Example:
        >>> import torch
        >>> x, y = split_batch({"img": torch.zeros(2, 3), "cls": [0, 1]}, keys=("img", "cls"))
        >>> x.shape, y.tolist()
        (torch.Size([2, 3]), [0, 1])
    """
    x: Any
    y: Any = None
    if isinstance(batch, torch.Tensor):
        x = batch
    elif isinstance(batch, (tuple, list)) and len(batch) > 0:
        x = batch[0]
        y = batch[1] if len(batch) > 1 else None
    elif isinstance(batch, Mapping):
        xk: str | None
        yk: str | None
        if keys is not None:
            xk, yk = keys
            if xk not in batch or (labels and yk is not None and yk not in batch):
                raise TypeError(
                    f"{name} is a mapping without the keys {keys!r} passed as keys=; "
                    f"got keys {list(batch)}"
                )
        else:
            xk = next((k for k in INPUT_KEYS if k in batch), None)
            if xk is None:
                raise TypeError(
                    f"{name} is a mapping without an input key; use one of {list(INPUT_KEYS)} "
                    f"(and for labels one of {list(LABEL_KEYS)}), got keys {list(batch)}; or "
                    "name yours with keys=(input_key, label_key)"
                )
            yk = next((k for k in LABEL_KEYS if k in batch), None)
        x = batch[xk]
        y = batch[yk] if yk is not None else None
    else:
        raise TypeError(
            f"{name} must be a Tensor, a tuple (x,) or (x, y), or a dict with an input key; "
            f"got {type(batch).__name__}"
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} inputs must be a torch.Tensor, got {type(x).__name__}")
    if not labels:
        return x, None
    if y is not None and not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    return x, y
