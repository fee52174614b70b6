"""What every outlier source shares: the source protocol, declared options, checks, RNG.

The scalar checks (numbers, ints, fractions) are :mod:`rejectnet._validation`'s; this
module adds only what is specific to outlier sources: ``(lo, hi)`` ranges and image
batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

__all__ = [
    "Options",
    "OutlierSource",
    "check_generator",
    "check_images",
    "check_labels",
    "check_range",
    "partners",
    "randint",
]


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
        x_in: Any,
        y: torch.Tensor,
        x_out: Any,
        n: int,
        generator: torch.Generator | None = None,
    ) -> Any:
        """Return ``n`` new rows of ``x_in``'s kind (the inputs are left unchanged).

        Args:
            x_in: The labeled in-distribution rows of the step: images ``(N, ...)``
                (image sources), or a token batch ``{"input_ids": (N, L), ...}`` (text
                sources, :mod:`rejectnet.outliers.text`).
            y: Their labels ``(N,)``.
            x_out: Exactly ``n`` pool rows when ``needs_pool``, else ``None`` or
                anything (ignored).
            n: Number of rows to return.
            generator: RNG on the images' device (``None``: torch's global RNG).
        """
        ...


class Options:
    """Mixin: a class names its constructor options once, in ``_options``.

    :meth:`options` (their current values), ``repr`` and
    :func:`rejectnet.outliers.signal.fingerprint` all read that one list, so a new
    option added to ``_options`` shows in all three; each name must be an attribute
    holding the option's (validated, normalised) value.

    Example:
        >>> class Shift(Options):
        ...     _options = ("by",)
        ...     def __init__(self, by: int = 1) -> None:
        ...         self.by = by
        >>> Shift(3), Shift(3).options()
        (Shift(by=3), {'by': 3})
    """

    _options: ClassVar[tuple[str, ...]] = ()

    def options(self) -> dict[str, Any]:
        """The constructor options' current values, by name, in declaration order."""
        return {name: getattr(self, name) for name in self._options}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({args})"


def check_range(
    value: object, name: str, check: Callable[[Any, str], float]
) -> tuple[float, float]:
    """A ``(lo, hi)`` pair with ``lo <= hi``, each end checked by ``check(v, name)``.

    Raises:
        TypeError: If ``value`` is not a sequence (a bare number included) or an end
            is not a number.
        ValueError: If it does not hold exactly two values, an end is out of range, or
            ``lo > hi``.

    Example:
        >>> from rejectnet._validation import check_fraction
        >>> check_range([0.25, 0.5], "cut", check_fraction)
        (0.25, 0.5)
    """
    what = f"{name} must be a range (lo, hi) of two numbers with lo <= hi"
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TypeError(f"{what}, got {type(value).__name__} {value!r}")
    if len(value) != 2:
        raise ValueError(f"{what}, got {len(value)} values {tuple(value)!r}")
    lo, hi = check(value[0], f"{name}[0]"), check(value[1], f"{name}[1]")
    if lo > hi:
        raise ValueError(f"{what}, got {tuple(value)!r}")
    return lo, hi


def check_generator(generator: object, name: str = "generator") -> torch.Generator | None:
    """``generator`` if it is a ``torch.Generator`` or ``None``, else a ``TypeError``."""
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"{name} must be a torch.Generator or None, got {type(generator).__name__}")
    return generator


def check_images(x: object, name: str, *, min_ndim: int = 2) -> torch.Tensor:
    """``x`` if it is a floating-point tensor with a batch dimension, else a clear error."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a floating-point tensor (N, ...), got {type(x).__name__}")
    if x.ndim < min_ndim or not x.dtype.is_floating_point:
        hint = ""
        if not x.dtype.is_floating_point and x.dtype != torch.bool:
            hint = (
                " (token ids? give text sources a dict of named tensors "
                "{'input_ids': ..., 'attention_mask': ...})"
            )
        raise ValueError(
            f"{name} must be a floating-point tensor (N, ...) with at least {min_ndim} "
            f"dimensions, got {x.dtype} {tuple(x.shape)}{hint}"
        )
    return x


def check_labels(y: object, n: int, what: str = "row") -> torch.Tensor | None:
    """``y`` if it is ``None`` or ``n`` integer labels ``(n,)``, else a clear error.

    Raises:
        TypeError: If ``y`` is neither ``None`` nor a tensor.
        ValueError: If it is not 1-D integer with one label per ``what``.
    """
    if y is None:
        return None
    if not isinstance(y, torch.Tensor):
        raise TypeError(f"y must be None or a 1-D integer tensor, got {type(y).__name__}")
    if y.ndim != 1 or y.shape[0] != n or y.dtype.is_floating_point:
        raise ValueError(
            f"y must be None or a 1-D integer tensor with one label per {what} ({n}), got "
            f"{y.dtype} {tuple(y.shape)}"
        )
    return y


def randint(
    high: int, size: tuple[int, ...], device: torch.device, generator: torch.Generator | None
) -> torch.Tensor:
    """Uniform int64 in ``[0, high)`` on ``device`` from ``generator`` (or the global RNG)."""
    return torch.randint(0, high, size, device=device, generator=generator)


def partners(
    y: torch.Tensor | None,
    n: int,
    device: torch.device,
    generator: torch.Generator | None,
    tries: int = 4,
) -> torch.Tensor:
    """For rows ``0..n-1``, a random other row, of a different label where one is found.

    ``tries`` candidates per row are drawn; the first whose label differs is taken (no
    host synchronisation: the choice is an ``argmax`` over a mask).
    """
    if n <= 1:
        return torch.zeros(n, dtype=torch.long, device=device)
    offsets = 1 + randint(n - 1, (n, tries), device, generator)
    cand = (torch.arange(n, device=device)[:, None] + offsets) % n
    if y is None:
        return cand[:, 0]
    differs = y[cand] != y[:, None]
    first = differs.to(torch.int8).argmax(dim=1)  # 0 when none differs: a random row
    return cand.gather(1, first[:, None]).squeeze(1)
