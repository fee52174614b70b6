"""Input checks shared by the scores, metrics and calibration code.

Every public function that takes scores or logits converts them here, so that
bad input fails the same way everywhere: a ``ValueError`` (or ``TypeError``)
whose message names the offending argument and says what would be valid.
Nothing here modifies the caller's data: tensors are detached and copied.
"""

from __future__ import annotations

import math
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "ArrayLike",
    "as_bool_array",
    "as_logits",
    "as_score_array",
    "check_flag",
    "check_fraction",
    "check_int",
    "check_number",
]

ArrayLike: TypeAlias = "torch.Tensor | npt.NDArray[Any] | list[float] | tuple[float, ...]"
"""Anything the numeric API accepts: a torch tensor, a numpy array or a sequence."""


def _to_numpy(x: Any, name: str) -> npt.NDArray[Any]:
    if isinstance(x, torch.Tensor):
        return (
            x.detach().to("cpu").numpy()
            if x.dtype != torch.bfloat16
            else (x.detach().to("cpu", torch.float32).numpy())
        )
    if isinstance(x, np.ndarray):
        return x
    if isinstance(x, (list, tuple)):
        try:
            return np.asarray(x)
        except ValueError as err:
            raise ValueError(f"{name} must be a 1-D sequence of numbers: {err}") from err
    raise TypeError(
        f"{name} must be a torch.Tensor, a numpy array or a list of numbers, got {type(x).__name__}"
    )


def as_score_array(x: Any, name: str, *, allow_empty: bool = False) -> npt.NDArray[np.float64]:
    """Convert 1-D scores to a new float64 numpy array, checking them.

    Args:
        x: Scores as a tensor, array or sequence of shape ``(N,)``.
        name: The argument's name, used in error messages.
        allow_empty: Whether ``N == 0`` is acceptable.

    Returns:
        A float64 array that does not share memory with ``x``.

    Raises:
        TypeError: If ``x`` is not array-like or not numeric.
        ValueError: If ``x`` is not 1-D, is empty, or holds NaN or inf.
    """
    arr = _to_numpy(x, name)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise TypeError(f"{name} must hold real numbers, got complex dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with shape (N,), got shape {tuple(arr.shape)}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty; it needs at least one score")
    out = np.array(arr, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(out)):
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(
            f"{name} holds {bad} NaN or infinite value(s); every score must be finite "
            "(check the model's outputs for overflow)"
        )
    return out


def as_bool_array(x: Any, name: str, length: int, length_name: str) -> npt.NDArray[np.bool_]:
    """Convert a 1-D 0/1 or boolean vector to a new boolean numpy array.

    Args:
        x: Booleans (or 0/1 numbers) of shape ``(N,)``.
        name: The argument's name, used in error messages.
        length: The length ``x`` must have.
        length_name: The argument whose length ``x`` must match.

    Returns:
        A boolean array that does not share memory with ``x``.

    Raises:
        TypeError: If ``x`` is not array-like.
        ValueError: If ``x`` has the wrong shape or values other than 0 and 1.
    """
    arr = _to_numpy(x, name)
    if arr.ndim != 1 or arr.shape[0] != length:
        raise ValueError(
            f"{name} must be 1-D with the same length as {length_name} ({length}), "
            f"got shape {tuple(arr.shape)}"
        )
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isin(arr, (0, 1))):
            raise ValueError(f"{name} must hold booleans or 0/1 values")
    return np.array(arr, dtype=np.bool_, copy=True)


def check_fraction(
    value: Any, name: str, *, low_open: bool = True, high_open: bool = False
) -> float:
    """Check that ``value`` is a fraction in ``(0, 1]`` (by default) and return it.

    Args:
        value: The number to check.
        name: The argument's name, used in error messages.
        low_open: Whether 0 is excluded.
        high_open: Whether 1 is excluded.

    Returns:
        ``value`` as a float.

    Raises:
        TypeError: If ``value`` is not a real number.
        ValueError: If ``value`` is outside the interval.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a number between 0 and 1, got {type(value).__name__}")
    v = float(value)
    lo_ok = v > 0.0 if low_open else v >= 0.0
    hi_ok = v < 1.0 if high_open else v <= 1.0
    if not (np.isfinite(v) and lo_ok and hi_ok):
        interval = f"{'(' if low_open else '['}0, 1{')' if high_open else ']'}"
        hint = " (the API speaks in fractions: write 0.95, not 95)" if v > 1.0 else ""
        raise ValueError(f"{name} must be a fraction in {interval}, got {value!r}{hint}")
    return v


def as_logits(logits: Any, name: str = "logits") -> torch.Tensor:
    """Convert logits of shape ``(N, W)`` to a float tensor without touching the input.

    Half-precision and bfloat16 logits are upcast to float32 so that every score is
    computed with the same (stable, log-softmax based) arithmetic.

    Args:
        logits: A tensor or numpy array of shape ``(N, W)``.
        name: The argument's name, used in error messages.

    Returns:
        A floating tensor of dtype float32 or float64 on the input's device.

    Raises:
        TypeError: If ``logits`` is not a tensor or array of real numbers.
        ValueError: If ``logits`` is not 2-D or holds NaN or inf.
    """
    if isinstance(logits, np.ndarray):
        t = torch.from_numpy(np.array(logits, copy=True))
    elif isinstance(logits, torch.Tensor):
        t = logits.detach()
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor or numpy array of shape (N, classes), "
            f"got {type(logits).__name__}"
        )
    if t.dtype == torch.bool or not (t.is_floating_point() or t.dtype in _INT_DTYPES):
        raise TypeError(f"{name} must hold real numbers, got dtype {t.dtype}")
    if t.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D with shape (N, classes), got shape {tuple(t.shape)}; "
            "add a batch dimension with .unsqueeze(0) for a single sample"
        )
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    # Inside torch.compile / torch.export the check would be a host sync and a
    # data-dependent branch that cannot be traced; compiled graphs skip it.
    if not _is_compiling() and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(
            f"{name} holds NaN or infinite values; scores need finite logits "
            "(check the model for overflow, e.g. run it in float32)"
        )
    return t


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _is_compiling() -> bool:
    """Whether torch.compile or torch.export is tracing the current call."""
    fn = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(fn()) if callable(fn) else False


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int = 1,
    allow_none: bool = False,
    maximum: int | None = None,
) -> Any:
    """Refuse a non-int (``TypeError``) or an int outside ``[minimum, maximum]`` (``ValueError``).

    Returns:
        ``value`` unchanged (an int, or ``None`` when ``allow_none``).

    Raises:
        TypeError: ``value`` is not an int (bools are refused too).
        ValueError: ``value < minimum`` or ``value > maximum``.
    """
    if value is None and allow_none:
        return value
    what = "a positive int (>= 1)" if minimum == 1 else f"an int >= {minimum}"
    if maximum is not None:
        what = f"an int in [{minimum}, {maximum}]"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{name} must be {what}{' or None' if allow_none else ''}, got "
            f"{type(value).__name__} {value!r}"
        )
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return value


def check_number(
    value: Any, name: str, *, positive: bool = False, maximum: float | None = None
) -> float:
    """A finite real number ``>= 0`` (``> 0`` when ``positive``, ``<= maximum``), as a float.

    Raises:
        TypeError: ``value`` is not a real number (bools are refused too).
        ValueError: It is negative (or 0 when ``positive``), above ``maximum``, NaN or inf.
    """
    bound = "> 0" if positive else ">= 0"
    if maximum is not None:
        bound = f"in {'(' if positive else '['}0, {maximum:g}]"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number {bound}, got {type(value).__name__} {value!r}")
    too_big = maximum is not None and value > maximum
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or too_big:
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_flag(value: Any, name: str) -> None:
    """Refuse anything but ``True`` or ``False`` (``TypeError``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")
