"""Reading the batches that users' data loaders yield.

A batch may be a bare tensor, a tuple or list ``(x,)`` / ``(x, y, ...)``, or a mapping
with an image key (``"x"``, ``"image"``, ``"images"``, ``"pixel_values"``, ``"input"``,
``"inputs"``) and optionally a label key (``"y"``, ``"label"``, ``"labels"``,
``"target"``, ``"targets"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["split_batch"]

_X_KEYS = ("x", "image", "images", "pixel_values", "input", "inputs")
_Y_KEYS = ("y", "label", "labels", "target", "targets")


def split_batch(batch: Any, name: str = "batch") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Split a loader batch into inputs and (optional) labels.

    Args:
        batch: What the data loader yielded.
        name: What to call the batch in error messages (e.g. ``"outlier_loader batch"``).

    Returns:
        ``(x, y)`` where ``y`` is ``None`` when the batch carries no labels.

    Raises:
        TypeError: If the batch has none of the accepted forms.
    """
    x: Any
    y: Any = None
    if isinstance(batch, torch.Tensor):
        x = batch
    elif isinstance(batch, (tuple, list)) and len(batch) > 0:
        x = batch[0]
        y = batch[1] if len(batch) > 1 else None
    elif isinstance(batch, Mapping):
        xk = next((k for k in _X_KEYS if k in batch), None)
        if xk is None:
            raise TypeError(
                f"{name} is a mapping without an input key; use one of {list(_X_KEYS)}, "
                f"got keys {list(batch)}"
            )
        x = batch[xk]
        yk = next((k for k in _Y_KEYS if k in batch), None)
        y = batch[yk] if yk is not None else None
    else:
        raise TypeError(
            f"{name} must be a Tensor, a tuple (x,) or (x, y), or a dict with an input key; "
            f"got {type(batch).__name__}"
        )
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} inputs must be a torch.Tensor, got {type(x).__name__}")
    if y is not None and not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    return x, y
