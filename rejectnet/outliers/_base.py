"""What every outlier source shares: the source protocol, argument checks, device RNG."""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch

__all__ = ["OutlierSource", "check_fraction", "check_images", "check_positive_int", "randint"]


@runtime_checkable
class OutlierSource(Protocol):
    """Something that makes ``n`` outlier rows for one training step.

    Attributes:
        needs_pool: Whether it transforms rows of the outlier pool (``x_out``); sources
            that synthesise from the in-distribution batch alone set it to ``False``.
    """

    needs_pool: bool

    def __call__(
        self,
        x_in: torch.Tensor,
        y: torch.Tensor,
        x_out: torch.Tensor | None,
        n: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Return ``(n, *x_in.shape[1:])`` new rows (the inputs are left unchanged).

        Args:
            x_in: The labeled in-distribution images of the step ``(N, ...)``.
            y: Their labels ``(N,)``.
            x_out: Exactly ``n`` pool rows when ``needs_pool``, else ``None`` or
                anything (ignored).
            n: Number of rows to return.
            generator: RNG on the images' device (``None``: torch's global RNG).
        """
        ...


def check_fraction(value: object, name: str, *, low: float = 0.0, high: float = 1.0) -> float:
    """``value`` as a float in ``[low, high]``, or a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [{low}, {high}], got {type(value).__name__}")
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def check_positive_int(value: object, name: str, *, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``, or a ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_images(x: object, name: str, *, min_ndim: int = 2) -> torch.Tensor:
    """``x`` if it is a floating-point tensor with a batch dimension, else a clear error."""
    if not isinstance(x, torch.Tensor) or x.ndim < min_ndim or not x.dtype.is_floating_point:
        raise ValueError(
            f"{name} must be a floating-point tensor (N, ...) with at least {min_ndim} "
            f"dimensions, got {getattr(x, 'dtype', type(x).__name__)} "
            f"{tuple(getattr(x, 'shape', ()))}"
        )
    return x


def randint(
    high: int, size: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Uniform int64 in ``[0, high)`` on ``device`` from ``generator`` (or the global RNG)."""
    return torch.randint(0, high, size, device=device, generator=generator)
