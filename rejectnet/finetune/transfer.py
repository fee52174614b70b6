"""Moving batches to the training device and the mixed-precision context."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from rejectnet.finetune.options import AmpMode

__all__ = ["autocast", "batch_to_device", "labels_to_device"]


def batch_to_device(
    parts: list[torch.Tensor], device: torch.device, *, channels_last: bool = False
) -> torch.Tensor:
    """Move a batch's parts to ``device`` and concatenate them there.

    On CUDA each CPU part is copied with ``non_blocking=True`` from pinned memory (a part
    a ``pin_memory=True`` loader already pinned is used as is, saving a host copy) and
    the concatenation runs on the GPU; elsewhere the parts are joined on the host and
    moved once. The caller's tensors are never modified.

    Args:
        parts: Tensors with the same shape after the first dimension.
        device: The training device.
        channels_last: Return 4-D batches in the ``channels_last`` memory format.

    Returns:
        One tensor on ``device``.
    """
    if device.type == "cuda":
        moved = [
            (p if p.is_pinned() else p.pin_memory()).to(device, non_blocking=True)
            if p.device.type == "cpu"
            else p.to(device)
            for p in parts
        ]
        x = moved[0] if len(moved) == 1 else torch.cat(moved)
    else:
        x = (parts[0] if len(parts) == 1 else torch.cat(parts)).to(device)
    if channels_last and x.ndim == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def labels_to_device(y: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move labels to ``device`` (non-blocking from pinned memory on CUDA)."""
    if device.type == "cuda" and y.device.type == "cpu":
        return y.pin_memory().to(device, non_blocking=True)
    return y.to(device)


def autocast(amp: AmpMode, device: torch.device) -> AbstractContextManager[Any]:
    """``torch.autocast`` for ``amp`` (bfloat16 or float16), or a no-op for ``False``."""
    if amp is False:
        return nullcontext()
    dtype = torch.float16 if amp == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)
