"""Snapshots and bit-for-bit comparisons for the reliability tests."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

_INT_VIEW = {
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
    torch.float32: torch.int32,
    torch.float64: torch.int64,
}


def snapshot(obj: Any) -> Any:
    """A deep copy of a model's state_dict, a tensor, an array, or containers of them."""
    if isinstance(obj, nn.Module):
        return {k: v.detach().clone() for k, v in obj.state_dict().items()}
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, dict):
        return {k: snapshot(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(snapshot(v) for v in obj)
    return obj


def _bits(t: torch.Tensor) -> torch.Tensor:
    t = t.detach().cpu().contiguous()
    if t.dtype in _INT_VIEW:
        t = torch.where(t.isnan(), torch.full_like(t, float("nan")), t)  # one NaN pattern
        return t.view(_INT_VIEW[t.dtype])
    return t


def bit_equal(a: Any, b: Any) -> bool:
    """Bit-for-bit equality of what :func:`snapshot` returns; any NaN equals any NaN."""
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and bool(torch.equal(_bits(a), _bits(b)))
        )
    if isinstance(a, np.ndarray):
        if not (isinstance(b, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape):
            return False
        if a.dtype.kind == "f":
            nan = np.isnan(a)
            return bool(np.array_equal(nan, np.isnan(b)) and a[~nan].tobytes() == b[~nan].tobytes())
        return a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return (
            isinstance(b, dict) and a.keys() == b.keys() and all(bit_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(bit_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    return bool(a == b)


def same_weights(
    a: nn.Module | dict[str, torch.Tensor], b: nn.Module | dict[str, torch.Tensor]
) -> bool:
    """``torch.equal`` on every state_dict entry, bit for bit (NaN equals NaN)."""
    return bit_equal(snapshot(a), snapshot(b))
