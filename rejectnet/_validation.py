"""The one checks module: every argument check of rejectnet lives here.

One exception policy, applied by every function below and by every caller:

* a value of the wrong **type** (a string for a number, a float for a count, a list for
  a tensor, a bool for an int) raises ``TypeError``;
* a value of the right type but a wrong **value** (out of range, NaN or infinite, the
  wrong shape, an unknown name) raises ``ValueError``.

Each message names the offending argument and says what would be valid. Nothing here
modifies the caller's data: tensors are detached and copied.

What is here: tracing detection (:func:`is_tracing`: data-dependent checks are skipped
while a graph is traced), finiteness (:func:`all_finite`, :func:`nonfinite_rows`,
:func:`check_finite_rows`, :func:`check_finite_logits`), numbers (:func:`check_real`,
:func:`check_number`, :func:`check_fraction`), counts (:func:`check_int`,
:func:`check_num_classes`), flags, devices and dtypes (:func:`check_flag`,
:func:`as_device`, :func:`check_dtype`), and array conversions (:func:`as_logits`,
:func:`as_score_array`, :func:`as_bool_array`).
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "ArrayLike",
    "all_finite",
    "MAX_SEED",
    "check_reject_weights",
    "integer_or_none",
    "as_bool_array",
    "as_device",
    "as_logits",
    "as_score_array",
    "check_dtype",
    "check_finite_inputs",
    "check_finite_logits",
    "check_logits_width",
    "check_finite_rows",
    "check_flag",
    "check_fraction",
    "check_int",
    "check_num_classes",
    "check_number",
    "check_real",
    "check_seed",
    "is_tracing",
    "nonfinite_rows",
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
    if not is_tracing() and t.numel() and not bool(torch.isfinite(t).all()):
        raise ValueError(
            f"{name} holds NaN or infinite values; scores need finite logits "
            "(check the model for overflow, e.g. run it in float32)"
        )
    return t


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


_is_compiling = torch.compiler.is_compiling
_jit_tracing = torch._C._is_tracing
_jit_scripting = torch.jit.is_scripting  # type: ignore[attr-defined]
# torch's own is_fx_symbolic_tracing() / is_in_onnx_export() cost 1-3 us a call (a
# thread-local getattr that raises, two imports): read the same flags directly
_fx_tls = getattr(torch.fx._symbolic_trace, "_is_fx_tracing_tls", None)


def _onnx_flags() -> tuple[Any, Any]:
    try:
        from torch.onnx._internal.exporter import _flags
        from torch.onnx._internal.torchscript_exporter._globals import GLOBALS
    except ImportError:  # another torch layout: the public (slower) call below
        return None, None
    return _flags, GLOBALS


_ONNX_FLAGS, _ONNX_GLOBALS = _onnx_flags()


def _in_onnx_export() -> bool:
    if _ONNX_FLAGS is None:
        return bool(torch.onnx.is_in_onnx_export())
    return bool(_ONNX_GLOBALS.in_onnx_export or _ONNX_FLAGS._is_onnx_exporting)


def _fx_tracing() -> bool:
    return bool(_fx_tls.__dict__.get("flag", False)) if _fx_tls is not None else False


def is_tracing() -> bool:
    """Whether a graph is being traced: torch.compile / dynamo, torch.export, the
    TorchScript tracer or compiler, torch.fx symbolic tracing, or the ONNX exporter.

    Data-dependent Python branches (host-side finiteness checks, errors) are skipped
    then: the graph takes the branch-free form.

    Example:
        >>> is_tracing()
        False
    """
    return bool(
        _is_compiling() or _jit_tracing() or _fx_tracing() or _in_onnx_export() or _jit_scripting()
    )


def nonfinite_rows(t: torch.Tensor) -> torch.Tensor:
    """``(N,)`` bool: the rows of ``t`` holding a NaN or infinite value.

    Example:
        >>> nonfinite_rows(torch.tensor([[1.0, float("nan")], [0.0, 2.0]]))
        tensor([ True, False])
    """
    if t.ndim == 1:
        return ~torch.isfinite(t)
    return ~torch.isfinite(t.reshape(t.shape[0], -1)).all(dim=1)


def all_finite(t: torch.Tensor) -> bool:
    """Whether ``t`` holds only finite values, with one reduction and one sync.

    The sum of a finite tensor is finite unless it overflows; only then (or when a
    value really is NaN/inf) does the exact per-element test run. True for
    non-floating and empty tensors.

    Example:
        >>> all_finite(torch.tensor([3e38, 3e38])), all_finite(torch.tensor([1.0, float("inf")]))
        (True, False)
    """
    if not t.is_floating_point() or t.numel() == 0:
        return True
    t = t.detach()
    total = t.sum(dtype=torch.float32) if t.dtype in (torch.float16, torch.bfloat16) else t.sum()
    if math.isfinite(float(total)):
        return True
    return not bool(nonfinite_rows(t).any())


def _rows_text(bad: torch.Tensor) -> tuple[int, str]:
    rows = bad.nonzero().flatten().tolist()
    shown = ", ".join(str(r) for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
    return len(rows), shown


def check_finite_rows(bad: torch.Tensor, name: str) -> None:
    """Refuse inputs ``name`` whose rows ``bad`` (``(N,)`` bool) hold NaN or infinity.

    Raises:
        ValueError: Naming ``name``, how many rows and which.

    Example:
        >>> check_finite_rows(torch.tensor([False, False]), "x")
    """
    if bool(bad.any()):
        n, shown = _rows_text(bad)
        raise ValueError(
            f"{name} holds NaN or infinite values for {n} of {bad.shape[0]} sample(s) "
            f"(rows {shown}); {name} must hold finite inputs (check the data: a NaN the model "
            "never reads would otherwise pass unnoticed)"
        )


def check_finite_inputs(x: torch.Tensor | dict[str, torch.Tensor], name: str) -> None:
    """Refuse a model input (one tensor, or named tensors) holding NaN or infinity.

    Raises:
        ValueError: Naming ``name`` (``name[key]`` for a named input) and the rows.

    Example:
        >>> check_finite_inputs({"ids": torch.zeros(2, 3)}, "x")
    """
    if type(x) is dict:
        for key, t in x.items():
            if not all_finite(t):
                check_finite_rows(nonfinite_rows(t), f"{name}[{key!r}]")
    elif not all_finite(x):  # type: ignore[arg-type]
        check_finite_rows(nonfinite_rows(x), name)  # type: ignore[arg-type]


def check_logits_width(logits: torch.Tensor, width: int, head_path: str) -> None:
    """Refuse a wrapped model's output that is not ``(N, C + k)`` logits.

    Raises:
        RuntimeError: The widened layer at ``head_path`` is not the model's final layer.

    Example:
        >>> check_logits_width(torch.zeros(2, 5), 5, "fc")
    """
    if logits.ndim != 2 or logits.shape[-1] != width:
        raise RuntimeError(
            f"the wrapped model returned logits of shape {tuple(logits.shape)}, expected "
            f"(N, {width}) = (N, C + k); the layer at head={head_path!r} is probably "
            "not the model's final layer. Pass head='dotted.path' of the last nn.Linear"
        )


def check_finite_logits(logits: torch.Tensor, name: str) -> None:
    """Refuse a model's logits on input ``name`` if any is NaN or infinite.

    Skipped while a graph is traced (:func:`is_tracing`: a data-dependent branch).

    Raises:
        ValueError: Naming the input ``name`` and the rows.

    Example:
        >>> check_finite_logits(torch.zeros(2, 3), "x")
    """
    if is_tracing() or all_finite(logits):
        return
    n, shown = _rows_text(nonfinite_rows(logits))
    raise ValueError(
        f"the model's logits on {name} hold NaN or infinite values for {n} of "
        f"{logits.shape[0]} sample(s) (rows {shown}); {name} must hold finite inputs on "
        "which the model does not overflow (check for NaN/inf in the data, or run in float32)"
    )


def check_real(value: Any, name: str, noun: str = "number") -> float:
    """``value`` (a real number or a 0-d tensor) as a finite float.

    Raises:
        TypeError: ``value`` is not a real number (strings and bools are refused).
        ValueError: It is NaN or infinite, or an integer beyond the float range.

    Example:
        >>> check_real(torch.tensor(0.5), "value", "threshold")
        0.5
    """
    if isinstance(value, (str, bytes, bool)):
        raise TypeError(f"{name} must be a finite real {noun}, got {value!r:.60}")
    try:
        v = float(value)
    except OverflowError:
        raise ValueError(
            f"{name} must be a finite {noun}; got an integer too large for a float "
            f"(about {int(abs(int(value)).bit_length() * math.log10(2)) + 1} digits)"
        ) from None
    except (TypeError, ValueError):
        raise TypeError(
            f"{name} must be a finite real {noun} (a float, a 0-d tensor or a "
            f"ThresholdResult), got {type(value).__name__}"
        ) from None
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite {noun}, got {v!r}")
    return v


def check_num_classes(num_classes: Any, width: int, *, allow_all: bool = False) -> int:
    """Validate ``num_classes`` (C) against a logits width and return it as an ``int``.

    Args:
        num_classes: The number C of ordinary classes.
        width: The number of columns of the logits (C + k).
        allow_all: Whether ``num_classes == width`` (no reject units) is acceptable.

    Raises:
        TypeError: If ``num_classes`` is not an integer (bools are refused).
        ValueError: If it is out of range for ``width``.

    Example:
        >>> check_num_classes(3, 5)
        3
    """
    c = integer_or_none(num_classes)
    if c is None:
        got = repr(num_classes) if isinstance(num_classes, bool) else type(num_classes).__name__
        raise TypeError(f"num_classes must be an integer, got {got}")
    if allow_all:
        if not 1 <= c <= width:
            raise ValueError(
                f"num_classes must satisfy 1 <= num_classes <= logits width ({width}), "
                f"got num_classes={c}"
            )
    elif not 1 <= c < width:
        raise ValueError(
            f"num_classes must satisfy 1 <= num_classes < logits width ({width}) so that "
            f"k = width - num_classes >= 1 reject units remain; got num_classes={c}"
        )
    return c


def as_device(value: Any, name: str = "device") -> torch.device:
    """``value`` (a ``torch.device``, a string such as ``"cpu"`` or ``"cuda:0"``) as a device.

    Raises:
        TypeError: ``value`` is neither a device nor a string.
        ValueError: The string names no device type torch knows.

    Example:
        >>> as_device("cpu")
        device(type='cpu')
    """
    if isinstance(value, torch.device):
        return value
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a torch.device or a string such as 'cpu' or 'cuda:0', "
            f"got {type(value).__name__}"
        )
    try:
        return torch.device(value)
    except RuntimeError as err:
        raise ValueError(f"{name}={value!r} is not a device: {err}") from None


def check_dtype(value: Any, name: str = "dtype", *, floating: bool = False) -> torch.dtype:
    """``value`` as a ``torch.dtype`` (floating when ``floating``).

    Raises:
        TypeError: ``value`` is not a ``torch.dtype``.
        ValueError: ``floating`` and it is not a floating dtype.

    Example:
        >>> check_dtype(torch.float16, floating=True)
        torch.float16
    """
    if not isinstance(value, torch.dtype):
        raise TypeError(f"{name} must be a torch.dtype, got {type(value).__name__}")
    if floating and not value.is_floating_point:
        raise ValueError(f"{name} must be a floating dtype, got {value}")
    return value


def integer_or_none(value: Any) -> int | None:
    """``value`` as a Python int if it is an integer (Python or numpy; not a bool), else None.

    The one test of "is an int" behind :func:`check_int`, :func:`check_num_classes` and
    the input spec's shape entries.

    Example:
        >>> integer_or_none(3), integer_or_none(True), integer_or_none(2.0)
        (3, None, None)
    """
    if isinstance(value, bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def check_int(
    value: Any,
    name: str,
    *,
    minimum: int = 1,
    allow_none: bool = False,
    maximum: int | None = None,
) -> int:
    """Refuse a non-int (``TypeError``) or an int outside ``[minimum, maximum]`` (``ValueError``).

    Python and numpy integers are accepted (``operator.index``); bools are refused.

    Returns:
        ``value`` as a Python int (``None`` passes through when ``allow_none``).

    Raises:
        TypeError: ``value`` is not an int (bools are refused too).
        ValueError: ``value < minimum`` or ``value > maximum``.

    Example:
        >>> check_int(3, "k")
        3
    """
    if value is None and allow_none:
        return value  # type: ignore[return-value]  # None passes through
    what = "a positive int (>= 1)" if minimum == 1 else f"an int >= {minimum}"
    if maximum is not None:
        what = f"an int in [{minimum}, {maximum}]"
    v = integer_or_none(value)
    if v is None:
        raise TypeError(
            f"{name} must be {what}{' or None' if allow_none else ''}, got "
            f"{type(value).__name__} {value!r:.60}"
        )
    if v < minimum or (maximum is not None and v > maximum):
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return v


MAX_SEED = 2**32 - 1
"""The largest seed anywhere (numpy's seed range; torch's ``manual_seed`` overflows past 2**64)."""


def check_seed(value: Any, name: str = "seed", *, allow_none: bool = False) -> int:
    """A seed: an int in ``[0, MAX_SEED]`` (``TypeError`` / ``ValueError`` naming ``name``).

    Example:
        >>> check_seed(7)
        7
    """
    return check_int(value, name, minimum=0, maximum=MAX_SEED, allow_none=allow_none)


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
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number {bound}, got {type(value).__name__} {value!r}")
    too_big = maximum is not None and float(value) > maximum
    if not math.isfinite(float(value)) or value < 0 or (positive and value == 0) or too_big:
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_flag(value: Any, name: str) -> None:
    """Refuse anything but ``True`` or ``False`` (``TypeError``)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def check_reject_weights(
    weights: Any, k: int, width: int, num_classes: int
) -> npt.NDArray[np.float64]:
    """Validate reject-unit weights: length ``k``, finite, non-negative, not all zero."""
    expected = f"expected length k = {k} (logits width {width} - num_classes {num_classes})"
    if isinstance(weights, torch.Tensor):
        w: npt.NDArray[np.float64] = np.array(
            weights.detach().to("cpu", torch.float64).numpy(), dtype=np.float64, copy=True
        )
    else:
        try:
            w = np.array(weights, dtype=np.float64, copy=True)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"weights must be a 1-D tensor, array or sequence of numbers ({expected}): {err}"
            ) from None
    if w.ndim != 1 or w.shape[0] != k:
        raise ValueError(
            f"weights must have one entry per reject unit, {expected}, got shape {tuple(w.shape)}"
        )
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"weights must be finite and non-negative, got {w.tolist()}")
    if not np.any(w > 0):
        raise ValueError("weights must not all be zero (the score would be 0 for every sample)")
    return w
