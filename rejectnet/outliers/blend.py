"""Pool rows as they are, and pool rows blended with in-distribution images.

The paper (its "Synthesized OOD Training Set" discussion) found that an outlier pool far
from the training data teaches features that generalise less, and that blending the
outliers with in-distribution images (``alpha = 0.1``) brought them closer and raised
AUROC. :class:`Blend` is that: ``(1 - alpha) * outlier + alpha * image``, the image a
random row of the step's labeled batch.

Assumption: a blend with a small ``alpha`` is still an outlier. With ``alpha`` near 0.5
or above, the in-distribution image dominates and the "outlier" may be a perfectly
readable digit; keep ``alpha`` well below 0.5.
"""

from __future__ import annotations

from typing import Any

import torch

from rejectnet._batches import batch_size
from rejectnet._validation import check_fraction
from rejectnet.outliers._base import Options, check_images, check_range, randint

__all__ = ["Blend", "PoolRows", "blend"]


def blend(
    x_out: torch.Tensor,
    x_in: torch.Tensor,
    alpha: float | tuple[float, float] = 0.1,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blend each outlier with a random in-distribution image.

    Args:
        x_out: Outlier images ``(M, ...)``.
        x_in: In-distribution images ``(N, ...)`` of the same per-row shape.
        alpha: Weight of the in-distribution image, or a range ``(lo, hi)`` from which
            each row draws its own weight uniformly.
        generator: RNG on the images' device (``None``: torch's global RNG).

    Returns:
        A new ``(M, ...)`` tensor ``(1 - a) * x_out + a * x_in[j]``; inputs unchanged.

    Raises:
        ValueError: If shapes differ, ``x_in`` is empty, or ``alpha`` is outside ``[0, 1]``.

    Example:
        >>> import torch
        >>> out = blend(torch.zeros(3, 1, 2, 2), torch.ones(5, 1, 2, 2), alpha=0.25)
        >>> out.shape, float(out.max())
        (torch.Size([3, 1, 2, 2]), 0.25)
    """
    check_images(x_out, "x_out")
    check_images(x_in, "x_in")
    if x_out.shape[1:] != x_in.shape[1:] or x_in.shape[0] == 0:
        raise ValueError(
            f"x_out rows {tuple(x_out.shape[1:])} and x_in rows {tuple(x_in.shape[1:])} must "
            "have the same shape, and x_in at least one row"
        )
    lo, hi = _alpha_range(alpha)
    m = x_out.shape[0]
    j = randint(x_in.shape[0], (m,), x_in.device, generator)
    shape = (m,) + (1,) * (x_out.ndim - 1)
    if lo == hi:
        a = torch.full(shape, lo, device=x_out.device, dtype=x_out.dtype)
    else:
        u = torch.rand(shape, device=x_out.device, generator=generator, dtype=x_out.dtype)
        a = lo + (hi - lo) * u
    return (1 - a) * x_out + a * x_in[j]


def _fraction(value: object, name: str) -> float:
    return check_fraction(value, name, low_open=False)


def _alpha_range(alpha: object) -> tuple[float, float]:
    if isinstance(alpha, (tuple, list)):
        return check_range(alpha, "alpha", _fraction)
    a = _fraction(alpha, "alpha")
    return a, a


def _check_alpha(alpha: object) -> float | tuple[float, float]:
    """``alpha`` normalised: a float, or a ``(lo, hi)`` tuple of floats."""
    lo, hi = _alpha_range(alpha)
    return (lo, hi) if isinstance(alpha, (tuple, list)) else lo


class PoolRows(Options):
    """The outlier pool's rows, unchanged (Algorithm 1's outlier batch).

    Example:
        >>> import torch
        >>> pool = torch.rand(4, 1, 2, 2)
        >>> torch.equal(PoolRows()(torch.zeros(2, 1, 2, 2), torch.zeros(2), pool, 4), pool)
        True
    """

    needs_pool = True

    def __call__(
        self,
        x_in: Any,
        y: torch.Tensor,
        x_out: Any,
        n: int,
        generator: torch.Generator | None = None,
    ) -> Any:
        """Return ``x_out`` (``n`` rows: images or a token batch) itself.

        See :class:`OutlierSource`.
        """
        if x_out is None or batch_size(x_out, "x_out") != n:
            raise ValueError(f"PoolRows needs exactly n={n} pool rows in x_out")
        return x_out


class Blend(Options):
    """Pool rows blended with in-distribution images (the paper's ``alpha``); see :func:`blend`.

    Args:
        alpha: Weight of the in-distribution image (the paper: 0.1), or a range.

    Raises:
        TypeError: If ``alpha`` is not a number or a pair of numbers.
        ValueError: If ``alpha`` is outside ``[0, 1]`` (or a range with ``lo > hi``).

    Example:
        >>> import torch
        >>> src = Blend(alpha=0.1)
        >>> src(torch.ones(4, 1, 2, 2), torch.zeros(4), torch.zeros(6, 1, 2, 2), 6).shape
        torch.Size([6, 1, 2, 2])
    """

    needs_pool = True
    _options = ("alpha",)

    def __init__(self, alpha: float | tuple[float, float] = 0.1) -> None:
        self.alpha = _check_alpha(alpha)

    def __call__(
        self,
        x_in: Any,
        y: torch.Tensor,
        x_out: Any,
        n: int,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Blend the ``n`` pool rows of ``x_out``; see :class:`OutlierSource`."""
        if isinstance(x_out, dict) or isinstance(x_in, dict):
            raise TypeError(
                "Blend mixes images (tensors); for token batches (text) use the sources of "
                "rejectnet.outliers.text (MixUtterances mixes two utterances)"
            )
        if x_out is None or x_out.shape[0] != n:
            raise ValueError(f"Blend needs exactly n={n} pool rows in x_out")
        return blend(x_out, x_in, self.alpha, generator)
