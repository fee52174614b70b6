"""The input a model was calibrated on: the shape after the batch dimension, and the dtype.

:meth:`rejectnet.RejectHead.calibrate` records an :class:`InputSpec` from its calibration
inputs in ``net.input_spec``; :meth:`~rejectnet.RejectHead.predict` and
:meth:`~rejectnet.RejectHead.ood_score` then check every batch against it, so that a
missing channel dimension, a wrong channel count, a wrong image size or a wrong dtype
gives a ``ValueError`` / ``TypeError`` naming ``x``, the shape (or dtype) received and the
one expected, instead of a raw torch error from deep inside the model. The spec is not
part of ``state_dict()``; :func:`rejectnet.save` writes it in the file's metadata
(:meth:`InputSpec.to_dict`) and :func:`rejectnet.load` sets it back
(:meth:`InputSpec.from_dict`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from rejectnet._batches import batch_size
from rejectnet._validation import integer_or_none

__all__ = [
    "AnySpec",
    "InputSpec",
    "ModelInput",
    "NamedInputSpec",
    "check_input_against_spec",
    "missing_dim_hint",
    "spec_from_dict",
    "spec_of",
]

_DTYPES: dict[str, torch.dtype] = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.uint8,
        torch.int8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.bool,
    )
}


@dataclass(frozen=True)
class InputSpec:
    """The shape of one sample (after the batch dimension) and the dtype of a batch.

    Attributes:
        shape: One entry per dimension after the batch dimension; ``None`` where any
            size is accepted (calibration batches that differed in that dimension).
        dtype: The dtype the batches must have.

    Example:
        >>> import torch
        >>> spec = InputSpec((1, 28, 28), torch.float32)
        >>> spec.to_dict()
        {'shape': [1, 28, 28], 'dtype': 'float32'}
        >>> InputSpec.from_dict(spec.to_dict()) == spec
        True
        >>> spec.describe()
        '(N, 1, 28, 28) float32'
    """

    shape: tuple[int | None, ...]
    dtype: torch.dtype

    def __post_init__(self) -> None:
        if not isinstance(self.shape, tuple) or any(
            d is not None and (isinstance(d, bool) or not isinstance(d, int) or d < 0)
            for d in self.shape
        ):
            raise ValueError(
                f"shape must be a tuple of sizes >= 0 (or None for any size), got {self.shape!r}"
            )
        if not isinstance(self.dtype, torch.dtype):
            raise TypeError(f"dtype must be a torch.dtype, got {self.dtype!r}")

    @classmethod
    def of(cls, x: torch.Tensor) -> InputSpec:
        """The spec of one batch ``x``: ``x.shape[1:]`` and ``x.dtype``.

        Example:
            >>> import torch
            >>> InputSpec.of(torch.zeros(4, 3, 8, 8)).describe()
            '(N, 3, 8, 8) float32'
        """
        return cls(tuple(int(d) for d in x.shape[1:]), x.dtype)

    def merge(self, other: InputSpec) -> InputSpec:
        """The spec accepting both: dimensions that differ become ``None``.

        Raises:
            ValueError: If the two differ in the number of dimensions or the dtype.

        Example:
            >>> import torch
            >>> a = InputSpec((3, 32, 32), torch.float32)
            >>> a.merge(InputSpec((3, 64, 64), torch.float32)).describe()
            '(N, 3, *, *) float32'
        """
        if len(self.shape) != len(other.shape) or self.dtype != other.dtype:
            raise ValueError(
                f"batches of shape {other.describe()} and {self.describe()} cannot be mixed; "
                "every batch must have the same number of dimensions and the same dtype"
            )
        return InputSpec(
            tuple(a if a == b else None for a, b in zip(self.shape, other.shape, strict=True)),
            self.dtype,
        )

    def matches(self, x: torch.Tensor) -> bool:
        """Whether the batch ``x`` has this spec's shape (after the batch dim) and dtype."""
        if x.dtype != self.dtype or x.ndim != len(self.shape) + 1:
            return False
        return all(d is None or d == s for d, s in zip(self.shape, x.shape[1:], strict=True))

    def describe(self) -> str:
        """The batch shape and dtype as text, e.g. ``'(N, 1, 28, 28) float32'``."""
        dims = ", ".join("*" if d is None else str(d) for d in self.shape)
        return f"(N{', ' if dims else ''}{dims}) {_dtype_name(self.dtype)}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"shape": [...], "dtype": "float32"}`` (``None`` stays)."""
        return {"shape": list(self.shape), "dtype": _dtype_name(self.dtype)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputSpec:
        """Rebuild a spec from :meth:`to_dict`'s output, validating every field.

        Raises:
            ValueError: If ``data`` lacks ``shape`` or ``dtype``, the shape is not a list
                of sizes (at most 16 dimensions, each ``None`` or an int in
                ``[0, 2**31)``), or the dtype is not one of the supported names.

        Example:
            >>> InputSpec.from_dict({"shape": [3, None, None], "dtype": "float16"}).describe()
            '(N, 3, *, *) float16'
        """
        if not isinstance(data, Mapping) or set(data) != {"shape", "dtype"}:
            raise ValueError(
                f"input_spec must be a mapping with exactly the keys 'shape' and 'dtype', "
                f"got {data!r:.200}"
            )
        shape, dtype = data["shape"], data["dtype"]
        if not isinstance(shape, Sequence) or isinstance(shape, (str, bytes)) or len(shape) > 16:
            raise ValueError(
                f"input_spec shape must be a list of at most 16 sizes, got {shape!r:.200}"
            )
        dims: list[int | None] = []
        for d in shape:
            if d is None:
                dims.append(None)
                continue
            v = integer_or_none(d)
            if v is None:  # a file's value, not an argument: ValueError
                raise ValueError(f"input_spec shape entries must be ints or None, got {d!r:.50}")
            if not 0 <= v < 2**31:
                raise ValueError(f"input_spec shape entries must be in [0, 2**31), got {v}")
            dims.append(v)
        if not isinstance(dtype, str) or dtype not in _DTYPES:
            raise ValueError(
                f"input_spec dtype must be one of {sorted(_DTYPES)}, got {dtype!r:.50}"
            )
        return cls(tuple(dims), _DTYPES[dtype])


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def missing_dim_hint(
    shape: tuple[int, ...], sample: Sequence[int | None], in_channels: int | None = None
) -> str:
    """Advice for a batch with one dimension too few: which ``x.unsqueeze(d)`` fixes it.

    Args:
        shape: The batch's shape (one dimension short).
        sample: The expected shape after the batch dimension (``None`` = any size), if
            known; else an empty sequence.
        in_channels: The channel count the model's first convolution expects, if known.

    Returns:
        A hint starting with ``"; "``, or ``""`` when no single fix can be named.

    Example:
        >>> missing_dim_hint((4, 28, 28), (1, 28, 28))
        '; the channel dimension seems to be missing: use x.unsqueeze(1)'
        >>> missing_dim_hint((1, 28, 28), (1, 28, 28))
        '; x looks like a single sample: add a batch dimension with x.unsqueeze(0)'
    """
    if sample:
        if len(shape) == len(sample) and all(
            e is None or e == s for e, s in zip(sample, shape, strict=True)
        ):
            return "; x looks like a single sample: add a batch dimension with x.unsqueeze(0)"
        fits = [
            d
            for d in range(1, len(shape) + 1)
            if all(
                e is None or e == s
                for e, s in zip(sample, (*shape[:d], 1, *shape[d:])[1:], strict=True)
            )
        ]
        if fits:
            d = fits[0]
            what = "the channel dimension" if d == 1 else f"dimension {d}"
            return f"; {what} seems to be missing: use x.unsqueeze({d})"
        return ""
    if in_channels is not None and len(shape) >= 1:
        if shape[0] == in_channels:
            return "; x looks like a single sample: add a batch dimension with x.unsqueeze(0)"
        if in_channels == 1:
            return "; the channel dimension seems to be missing: use x.unsqueeze(1)"
    return "; add the missing dimension (x.unsqueeze(0) for a single sample)"


def check_input_against_spec(x: torch.Tensor, spec: InputSpec, name: str = "x") -> None:
    """Raise a clear error if the batch ``x`` does not have the recorded shape or dtype.

    Args:
        x: The batch.
        spec: The recorded spec (``net.input_spec``).
        name: The argument's name in the message.

    Raises:
        ValueError: If the number of dimensions or a size differs (the message gives the
            shape received, the one expected, and a fix where one is clear).
        TypeError: If the dtype differs.

    Example:
        >>> import torch
        >>> spec = InputSpec((1, 28, 28), torch.float32)
        >>> try:
        ...     check_input_against_spec(torch.rand(4, 28, 28), spec)
        ... except ValueError as err:
        ...     print(str(err).split("; ")[1])
        the channel dimension seems to be missing: use x.unsqueeze(1)
    """
    if spec.matches(x):
        return
    shape = tuple(int(d) for d in x.shape)
    want = spec.describe().rsplit(" ", 1)[0]
    if x.ndim != len(spec.shape) + 1 or not all(
        d is None or d == s for d, s in zip(spec.shape, x.shape[1:], strict=False)
    ):
        hint = ""
        if x.ndim == len(spec.shape):
            hint = missing_dim_hint(shape, spec.shape)
        elif x.ndim == len(spec.shape) + 1 and spec.shape and spec.shape[0] is not None:
            if x.shape[1] != spec.shape[0]:
                hint = f"; x has {x.shape[1]} channels, the model was calibrated on {spec.shape[0]}"
            else:
                hint = "; resize or crop the inputs to the calibrated size"
        raise ValueError(
            f"{name} must have shape {want} (net.input_spec, recorded by calibrate), got "
            f"{shape}{hint}"
        )
    raise TypeError(
        f"{name} has dtype {_dtype_name(x.dtype)} but the model expects "
        f"{_dtype_name(spec.dtype)} (net.input_spec); convert it, e.g. "
        f"x.to(torch.{_dtype_name(spec.dtype)}), with the same scaling as the training data"
    )


@dataclass(frozen=True)
class NamedInputSpec:
    """The inputs of a model that takes named tensors (``model(**x)``): one spec per name.

    Recorded by :meth:`rejectnet.RejectHead.calibrate` from dict batches (Hugging Face
    style: ``input_ids``, ``attention_mask`` ...). Each input keeps its name, dtype and
    shape after the batch dimension; the sequence dimension of a ``(N, L)`` input is
    recorded as any size (``None``), as are dimensions that differ between batches.

    Attributes:
        inputs: ``(name, InputSpec)`` pairs, in the model's input order.

    Example:
        >>> import torch
        >>> ids = torch.zeros(2, 7, dtype=torch.long)
        >>> x = {"input_ids": ids, "attention_mask": torch.ones(2, 7)}
        >>> NamedInputSpec.of(x).describe()
        'input_ids: (N, *) int64, attention_mask: (N, *) float32'
    """

    inputs: tuple[tuple[str, InputSpec], ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The input names, in order."""
        return tuple(n for n, _ in self.inputs)

    @classmethod
    def of(cls, x: Mapping[str, torch.Tensor]) -> NamedInputSpec:
        """The spec of one dict batch (sequence dimensions of ``(N, L)`` inputs: any size)."""
        out = []
        for name, t in x.items():
            spec = InputSpec.of(t)
            if t.ndim == 2:
                spec = InputSpec((None,), spec.dtype)
            out.append((str(name), spec))
        return cls(tuple(out))

    def merge(self, other: NamedInputSpec) -> NamedInputSpec:
        """The spec accepting both (see :meth:`InputSpec.merge`).

        Raises:
            ValueError: If the two name other inputs, or an input's rank or dtype differs.
        """
        if self.names != other.names:
            raise ValueError(
                f"batches with the inputs {list(other.names)} and {list(self.names)} cannot "
                "be mixed; every batch must hold the same named inputs"
            )
        return NamedInputSpec(
            tuple((n, a.merge(b)) for (n, a), (_, b) in zip(self.inputs, other.inputs, strict=True))
        )

    def matches(self, x: Any) -> bool:
        """Whether the dict ``x`` holds exactly these inputs, each of its spec."""
        if not isinstance(x, Mapping) or tuple(x) != self.names:
            return False
        return all(s.matches(x[n]) for n, s in self.inputs)

    def check(self, x: Mapping[str, Any], name: str = "x") -> None:
        """Raise a clear error unless ``x`` holds these inputs, each of its spec.

        Raises:
            ValueError: If an input is missing or extra, or has another shape.
            TypeError: If an input is not a tensor or has another dtype.
        """
        missing = [n for n in self.names if n not in x]
        extra = [n for n in x if n not in self.names]
        if missing or extra:
            raise ValueError(
                f"{name} must hold the inputs {list(self.names)} (net.input_spec, recorded "
                f"by calibrate); missing {missing}, unexpected {extra}"
            )
        for n, spec in self.inputs:
            t = x[n]
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}[{n!r}] must be a torch.Tensor, got {type(t).__name__}")
            check_input_against_spec(t, spec, f"{name}[{n!r}]")

    def describe(self) -> str:
        """Every input as ``name: (N, ...) dtype``."""
        return ", ".join(f"{n}: {s.describe()}" for n, s in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"inputs": [[name, {"shape": ..., "dtype": ...}], ...]}``."""
        return {"inputs": [[n, s.to_dict()] for n, s in self.inputs]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NamedInputSpec:
        """Rebuild a spec from :meth:`to_dict`'s output, validating every field.

        Raises:
            ValueError: If the structure or any input's spec is invalid.
        """
        items = data.get("inputs") if isinstance(data, Mapping) else None
        if set(data) != {"inputs"} or not isinstance(items, list) or not 1 <= len(items) <= 64:
            raise ValueError(
                f"input_spec must be a mapping {{'inputs': [[name, spec], ...]}} of 1 to 64 "
                f"inputs, got {data!r:.200}"
            )
        out = []
        for item in items:
            if not (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], str)
                and 0 < len(item[0]) <= 128
            ):
                raise ValueError(f"input_spec inputs must be [name, spec] pairs, got {item!r:.100}")
            out.append((item[0], InputSpec.from_dict(item[1])))
        if len({n for n, _ in out}) != len(out):
            raise ValueError("input_spec inputs repeat a name")
        return cls(tuple(out))


AnySpec = InputSpec | NamedInputSpec
"""What ``net.input_spec`` holds: one tensor's spec, or one per named input."""


@dataclass(frozen=True)
class ModelInput:
    """What a wrapped model takes: its recorded spec, and what the model itself tells.

    :class:`~rejectnet.RejectHead` checks every batch with :meth:`check` before the
    model sees it: the form (one tensor or named tensors), the rank, the dtype and,
    once calibrated, the recorded spec.

    Attributes:
        spec: The recorded input spec (``None`` before calibration).
        ndim: The rank the model's first convolution needs (``None``: no convolution).
        channels: Its input channels, for the hint when a dimension is missing.
        dtype: The dtype of the model's floating parameters.
        takes_integers: Whether the model embeds integer ids (``nn.Embedding``).

    Example:
        >>> import torch
        >>> rule = ModelInput(ndim=4, channels=1, dtype=torch.float32)
        >>> try:
        ...     rule.check(torch.zeros(2, 28, 28))
        ... except ValueError as err:
        ...     print(str(err).split("; ")[0])
        x must be 4-D (batch, channels, ...), got shape (2, 28, 28)
    """

    spec: AnySpec | None = None
    ndim: int | None = None
    channels: int | None = None
    dtype: torch.dtype | None = None
    takes_integers: bool = False

    def without_spec(self) -> ModelInput:
        """This rule before calibration (what ``calibrate`` checks its batches with)."""
        return self if self.spec is None else replace(self, spec=None)

    def check(self, x: Any, *, match_spec: bool = True) -> None:
        """Raise a clear error unless ``x`` is a batch the model takes.

        Args:
            x: The batch: a tensor, or a dict of named tensors.
            match_spec: Also compare every size with the recorded spec (``predict``,
                ``ood_score``); ``forward`` checks only the form, rank and dtype.

        Raises:
            TypeError: Not a tensor or dict of tensors, or the wrong dtype.
            ValueError: The wrong rank or shape, or named tensors of different sizes.
        """
        if isinstance(x, torch.Tensor):
            self._check_tensor(x, match_spec)
        elif isinstance(x, dict):
            self._check_named(x, match_spec)
        else:
            raise TypeError(
                "x must be a torch.Tensor batch or a dict of named tensors (or pass the "
                f"inputs as keyword arguments, net(input_ids=..., ...)), got {type(x).__name__}"
            )

    def _check_tensor(self, x: torch.Tensor, match_spec: bool) -> None:
        """One tensor: no named spec recorded, then its rank, dtype and (optionally) sizes."""
        spec = self.spec
        if isinstance(spec, NamedInputSpec):
            raise TypeError(
                f"x must be a dict of named tensors ({spec.describe()}; net.input_spec, "
                "recorded by calibrate), got one tensor"
            )
        exp = len(spec.shape) + 1 if spec is not None else self.ndim
        if x.ndim < 2 or (exp is not None and x.ndim != exp):
            self._refuse_rank(x, spec, exp)
        want = spec.dtype if spec is not None else self.dtype
        if want is not None and x.dtype != want:
            self._check_dtype(x, spec, want)
        if match_spec and spec is not None:
            check_input_against_spec(x, spec, "x")

    def _check_named(self, x: dict[str, Any], match_spec: bool) -> None:
        """Named inputs: no single-tensor spec recorded, the recorded names and sizes, then
        tensors of one batch size."""
        if not x:
            raise ValueError("x holds no inputs; pass at least one named tensor")
        if isinstance(self.spec, InputSpec):
            raise TypeError(
                f"x must be one tensor of shape {self.spec.describe()} (net.input_spec, "
                f"recorded by calibrate), got a dict of {list(x)}"
            )
        if match_spec and isinstance(self.spec, NamedInputSpec):
            self.spec.check(x, "x")
        batch_size(x, "x")

    def _refuse_rank(self, x: torch.Tensor, spec: InputSpec | None, exp: int | None) -> None:
        """``x`` has not the rank ``exp`` (at least 2): a ValueError with a hint where clear."""
        want = (
            f"{exp}-D {spec.describe().rsplit(' ', 1)[0]}"
            if spec is not None
            else f"{exp}-D (batch, channels, ...)"
            if exp is not None
            else "at least 2-D"
        )
        hint = ""
        if exp is not None and x.ndim == exp - 1:
            hint = missing_dim_hint(
                tuple(x.shape), spec.shape if spec is not None else (), self.channels
            )
        raise ValueError(f"x must be {want}, got shape {tuple(x.shape)}{hint}")

    def _check_dtype(self, x: torch.Tensor, spec: InputSpec | None, want: torch.dtype) -> None:
        """``x`` is not of dtype ``want``: fine under autocast or for token ids, else refused."""
        if x.is_floating_point() and want.is_floating_point and _autocasting():
            return  # autocast converts floating inputs
        if not x.is_floating_point() and spec is None and self.takes_integers:
            return  # token ids for an embedding layer
        raise TypeError(
            f"x has dtype {_dtype_name(x.dtype)} but the model expects "
            f"{_dtype_name(want)}; convert it first (e.g. "
            f"x.to(torch.{_dtype_name(want)}), scaled as the training "
            "data were, e.g. uint8 images / 255)"
        )


def _autocasting() -> bool:
    return torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda")


def spec_from_dict(data: Any) -> AnySpec:
    """:meth:`InputSpec.from_dict` or :meth:`NamedInputSpec.from_dict`, by the form of ``data``.

    Example:
        >>> spec_from_dict({"shape": [3], "dtype": "float32"}).describe()
        '(N, 3) float32'
    """
    if isinstance(data, Mapping) and "inputs" in data:
        return NamedInputSpec.from_dict(data)
    return InputSpec.from_dict(data)


def spec_of(x: Any) -> AnySpec:
    """The spec of one batch: :class:`InputSpec` of a tensor, :class:`NamedInputSpec` of a dict."""
    return NamedInputSpec.of(x) if isinstance(x, Mapping) else InputSpec.of(x)
