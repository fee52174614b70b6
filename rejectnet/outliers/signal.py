"""The outlier signal of a training step: which outlier rows, and which virtual outliers.

:class:`OutlierSignal` is the contract between a training loop and the outlier pieces
of :mod:`rejectnet.outliers`; :class:`ComposedSignal` is the implementation that mixes
them. A loop (the fine-tuners, or your own) does, per step::

    signal.attach(model)                                    # once, before the first step
    x_out = signal.outlier_batch(x_in, y, x_pool, num_outliers)   # x_pool may be None
    x = cat_inputs([x_in, x_out], pad_values=...) if x_out is not None else x_in
    logits = call_model(model, x)                            # ONE forward
    logits_out = logits[n_in:]
    extra = signal.extra_outlier_logits(n_in, y)            # virtual outliers, or None
    if extra is not None:
        logits_out = torch.cat([logits_out, extra])
    loss = objective(logits[:n_in], y, logits_out)
    ...
    signal.detach()                                         # once, at the end (finally)

and saves ``signal.state_dict()`` with its checkpoints. ``x_in`` is an image batch, or a
token batch (a dict of named tensors) for text models; ``cat_inputs`` and ``call_model``
are :mod:`rejectnet._batches`'.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from rejectnet._batches import Inputs, batch_size, cat_inputs, pad_values_for, take_rows
from rejectnet._validation import check_int, check_number
from rejectnet.outliers._base import Options, OutlierSource, check_generator, check_images
from rejectnet.outliers.blend import PoolRows
from rejectnet.outliers.virtual import VirtualOutliers

__all__ = ["ComposedSignal", "OutlierSignal", "fingerprint", "split_counts"]


@runtime_checkable
class OutlierSignal(Protocol):
    """What a training loop needs from an outlier signal (see the module docstring).

    Attributes:
        uses_pool: Whether :meth:`outlier_batch` needs pool rows; a loop without an
            outlier pool must refuse a signal that does.
    """

    uses_pool: bool

    def attach(self, model: nn.Module) -> None:
        """Called once before the first step with the model being trained."""
        ...

    def detach(self) -> None:
        """Called once after the last step (also when training fails)."""
        ...

    def outlier_batch(
        self,
        x_in: Inputs,
        y: torch.Tensor,
        x_out: Inputs | None,
        num_outliers: int,
    ) -> Inputs | None:
        """The ``num_outliers`` outlier rows to forward with ``x_in``, or ``None``."""
        ...

    def extra_outlier_logits(self, n_in: int, y: torch.Tensor) -> torch.Tensor | None:
        """Logits of virtual outliers from this step's forward, or ``None``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (tensors and plain Python only)."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        ...


def split_counts(total: int, shares: Sequence[float]) -> list[int]:
    """Split ``total`` rows by ``shares`` (normalised) with largest-remainder rounding.

    Args:
        total: Rows to split.
        shares: Non-negative weights, not all zero.

    Returns:
        Non-negative ints summing to ``total``; ties go to the earlier share.

    Raises:
        TypeError: If ``total`` is not an int or a share not a number.
        ValueError: If ``total`` is negative, a share negative or all shares zero.

    Example:
        >>> split_counts(10, [0.5, 0.25, 0.25]), split_counts(7, [1, 1, 1])
        ([5, 3, 2], [3, 2, 2])
    """
    check_int(total, "total", minimum=0)
    if isinstance(shares, (str, bytes)) or not isinstance(shares, Sequence):
        raise TypeError(f"shares must be a sequence of numbers, got {type(shares).__name__}")
    shares = [check_number(w, f"shares[{i}]") for i, w in enumerate(shares)]
    if not shares or sum(shares) <= 0:
        raise ValueError(f"shares must hold at least one share > 0, got {shares!r}")
    s = float(sum(shares))
    exact = [total * w / s for w in shares]
    counts = [int(e) for e in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def _device(x: Inputs) -> torch.device:
    return x.device if isinstance(x, torch.Tensor) else next(iter(x.values())).device


def _copy(x: Inputs) -> Inputs:
    return x.clone() if isinstance(x, torch.Tensor) else {k: v.clone() for k, v in x.items()}


def _check_pool(x_in: Inputs, x_out: Inputs) -> None:
    """The pool batch is of ``x_in``'s kind: images of its row shape, or the same names."""
    if isinstance(x_in, dict):
        if not isinstance(x_out, dict):
            raise TypeError(
                f"x_out must be a token batch (dict of named tensors) like x_in, got "
                f"{type(x_out).__name__}"
            )
        batch_size(x_out, "x_out")
        if set(x_out) != set(x_in):
            raise ValueError(
                f"x_out names {sorted(x_out)} differ from x_in names {sorted(x_in)}; give "
                "the outlier pool the same tokenizer outputs"
            )
        return
    check_images(x_out, "x_out")
    assert isinstance(x_out, torch.Tensor)
    if x_out.shape[1:] != x_in.shape[1:]:
        raise ValueError(
            f"x_out rows {tuple(x_out.shape[1:])} differ from x_in rows {tuple(x_in.shape[1:])}"
        )


def fingerprint(obj: Any) -> dict[str, Any]:
    """A JSON-able description of every option's value of a signal, recursively.

    The one fingerprint of rejectnet: the run fingerprint
    (:mod:`rejectnet.finetune.fingerprint`) enters the outlier signal and the objective
    with it. Two signals (or sources, labelers, recipes, losses) fingerprint equal exactly
    when they were built with the same options, so they behave the same: ``Blend(0.1)``
    and ``Blend(0.45)`` differ, ``Jigsaw(2)`` and ``Rotate()`` differ, ``Stitch([0.3,
    0.6])`` and ``Stitch((0.3, 0.6))`` agree. Every object is entered with its class's
    qualified name: rejectnet's pieces by the options they declare
    (:class:`~rejectnet.outliers._base.Options`), named tuples
    (:class:`~rejectnet.outliers.Recipe`) by their fields, an object with an
    ``options()`` method by its result, any other object (a loss, a user's source) by
    its constructor's parameters read back from its attributes, then its other public
    attributes; a function by its qualified name; a ``torch.Generator`` by its device
    and initial seed (its current state is the run's RNG state, checkpointed apart); a
    tensor by dtype, shape and a hash of its values. Learned state (the virtual
    outliers' queue) is not an option and does not enter.

    Args:
        obj: A signal (:class:`ComposedSignal`, a recipe's ``signal``), a source, a
            labeler, a :class:`~rejectnet.outliers.Recipe`, a string such as
            ``"random"``, or ``None``.

    Returns:
        A dict of JSON types only (``json.dumps`` round-trips it); non-finite floats
        appear as ``{"float": "nan"}``.

    Example:
        >>> from rejectnet.outliers import Blend
        >>> fingerprint(Blend(0.1))
        {'class': 'rejectnet.outliers.blend.Blend', 'options': {'alpha': 0.1}}
        >>> fingerprint(Blend(0.1)) == fingerprint(Blend(0.45))
        False
    """
    out = _describe(obj, set())
    if isinstance(out, dict) and "class" in out:
        return out
    return {"class": _qualname(type(obj)), "value": out}


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _describe(value: Any, active: set[int]) -> Any:
    """``value`` as JSON types (see :func:`fingerprint`); ``active`` guards cycles."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, numbers.Integral):  # int, numpy ints
        return int(value)
    if isinstance(value, numbers.Real):  # float, numpy floats
        v = float(value)
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(value, enum.Enum):
        return {"class": _qualname(type(value)), "value": value.name}
    if isinstance(value, (bytes, bytearray)):
        return {"class": "bytes", "sha256": hashlib.sha256(bytes(value)).hexdigest()}
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, (torch.dtype, torch.device)):
        return str(value)
    if isinstance(value, torch.Generator):
        return {
            "class": "torch.Generator",
            "options": {"device": str(value.device), "initial_seed": value.initial_seed()},
        }
    if isinstance(value, torch.Tensor):
        data = value.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy()
        return {
            "class": "torch.Tensor",
            "options": {
                "dtype": str(value.dtype),
                "shape": list(value.shape),
                "sha256": hashlib.sha256(data.tobytes()).hexdigest(),
            },
        }
    if id(value) in active:
        return {"class": _qualname(type(value)), "cycle": True}
    active.add(id(value))
    try:
        return _describe_container(value, active)
    finally:
        active.discard(id(value))


def _describe_container(value: Any, active: set[int]) -> Any:
    cls = _qualname(type(value))
    if isinstance(value, tuple) and hasattr(value, "_asdict"):
        return {"class": cls, "options": _describe(dict(value._asdict()), active)}
    if isinstance(value, Mapping):  # in its own order (equality and hashes ignore it)
        return {str(k): _describe(v, active) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_describe(v, active) for v in value]
    if isinstance(value, (set, frozenset)):
        items = [_describe(v, active) for v in value]
        return {"class": cls, "items": sorted(items, key=lambda v: json.dumps(v, sort_keys=True))}
    options = getattr(value, "options", None)
    if callable(options) and not isinstance(value, type):
        return {"class": cls, "options": _describe(dict(options()), active)}
    if callable(value) and hasattr(value, "__qualname__"):
        return {"class": "function", "name": f"{value.__module__}.{value.__qualname__}"}
    if not hasattr(value, "__dict__"):  # no attributes to read: its repr, unless an address
        text = repr(value)
        return {"class": cls} if " at 0x" in text else {"class": cls, "repr": text}
    return {"class": cls, "options": _describe(_constructor_options(value), active)}


def _constructor_options(value: Any) -> dict[str, Any]:
    """An object's options: each constructor parameter read back from the attribute of
    that name (or ``_name``; a submodule of an ``nn.Module`` too), then every other
    public attribute (``nn.Module.training`` left out)."""
    try:
        params = inspect.signature(type(value).__init__).parameters
    except (TypeError, ValueError):
        params = {}  # type: ignore[assignment]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    options: dict[str, Any] = {}
    for name, param in params.items():
        if name == "self" or param.kind not in kinds:
            continue
        for attr in (name, f"_{name}"):
            if hasattr(value, attr):
                options[name] = getattr(value, attr)
                break
    for key, v in vars(value).items():
        if not key.startswith("_") and key not in options and key != "training":
            options[key] = v
    return options


class ComposedSignal(Options):
    """An outlier batch mixed from several sources, plus optional virtual outliers.

    Args:
        parts: ``(source, share)`` pairs; each step's ``num_outliers`` rows are split
            between the sources by share (:func:`split_counts`). Sources with
            ``needs_pool`` consume distinct rows of the pool batch, in order (wrapping
            around when it is shorter). The default, ``[(PoolRows(), 1.0)]``, is the pool
            batch unchanged; ``[]`` forwards no outlier rows (virtual outliers only).
        virtual: Feature-space virtual outliers (:class:`VirtualOutliers`), or ``None``.
        generator: RNG for the input-space sources, on the data's device (``None``:
            torch's global RNG, which the fine-tuners seed and checkpoint).

    The sources work on one kind of input: images (tensors) for :class:`Jigsaw`,
    :class:`Blend` and the other image sources, token batches (dicts of named tensors)
    for the text sources of :mod:`rejectnet.outliers.text`; :class:`PoolRows` and
    :class:`VirtualOutliers` work on both.

    Raises:
        TypeError: If a part is not an :class:`OutlierSource` or ``virtual`` is not a
            :class:`VirtualOutliers`.
        ValueError: If a share is negative or all are zero.

    Example:
        >>> import torch
        >>> from rejectnet.outliers import Blend, Jigsaw
        >>> signal = ComposedSignal([(Blend(0.1), 0.5), (Jigsaw(2), 0.5)])
        >>> x_in, y = torch.rand(8, 1, 8, 8), torch.randint(0, 3, (8,))
        >>> signal.outlier_batch(x_in, y, torch.rand(40, 1, 8, 8), 40).shape
        torch.Size([40, 1, 8, 8])
        >>> ComposedSignal([(Jigsaw(2), 1.0)]).uses_pool
        False
    """

    _options = ("parts", "virtual", "generator")

    def __init__(
        self,
        parts: Sequence[tuple[OutlierSource, float]] | None = None,
        virtual: VirtualOutliers | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        if parts is None:
            parts = [(PoolRows(), 1.0)]
        if isinstance(parts, (str, bytes)) or not isinstance(parts, Sequence):
            raise TypeError(
                f"parts must be a list of (source, share) pairs, got {type(parts).__name__}"
            )
        checked: list[tuple[OutlierSource, float]] = []
        for i, part in enumerate(parts):
            if not (isinstance(part, tuple) and len(part) == 2):
                raise TypeError(f"parts[{i}] must be a (source, share) pair, got {part!r}")
            source, share = part
            if not isinstance(source, OutlierSource):
                raise TypeError(
                    f"parts[{i}] source must be an OutlierSource (PoolRows, Blend, Jigsaw, "
                    f"Stitch, Overlay, Rotate, ...), got {type(source).__name__}"
                )
            checked.append((source, check_number(share, f"parts[{i}] share", maximum=1e9)))
        if checked and sum(s for _, s in checked) <= 0:
            raise ValueError("parts: at least one share must be > 0")
        if virtual is not None and not isinstance(virtual, VirtualOutliers):
            raise TypeError(f"virtual must be VirtualOutliers or None, got {virtual!r}")
        self.parts = checked
        self.virtual = virtual
        self.generator = check_generator(generator)
        self._pad_values: dict[str, int] | None = None

    @property
    def uses_pool(self) -> bool:
        """Whether any source transforms pool rows (then the loop needs an outlier pool)."""
        return any(s.needs_pool for s, w in self.parts if w > 0)

    def validate(self, has_pool: bool) -> None:
        """Check that this signal can run with (or without) an outlier pool.

        Raises:
            ValueError: If ``has_pool`` is ``False`` and a source needs pool rows.
        """
        if not has_pool and self.uses_pool:
            names = [repr(s) for s, w in self.parts if w > 0 and s.needs_pool]
            raise ValueError(
                f"outlier_loader=None, but the outlier signal's sources {names} transform "
                "pool rows; pass an outlier_loader or use only synthesis sources (images: "
                "Jigsaw, Stitch, Overlay, Rotate, Warp; text: SpanShuffle, MixUtterances, "
                "RandomTokens, MaskTokens) and/or VirtualOutliers"
            )

    def attach(self, model: nn.Module) -> None:
        """Attach the virtual outliers' feature hook (if any) to ``model``'s head.

        Also reads the model's pad values (:func:`rejectnet._batches.pad_values_for`),
        used to pad token sequences of different lengths to one batch.
        """
        self._pad_values = pad_values_for(getattr(model, "module", model))
        if self.virtual is not None:
            self.virtual.attach(model)

    def detach(self) -> None:
        """Remove the feature hook (if any)."""
        if self.virtual is not None:
            self.virtual.detach()

    def outlier_batch(
        self,
        x_in: Inputs,
        y: torch.Tensor,
        x_out: Inputs | None,
        num_outliers: int,
    ) -> Inputs | None:
        """The step's ``num_outliers`` outlier rows, in the order of ``parts``.

        Args:
            x_in: Labeled in-distribution rows (already on the device): images
                ``(N, ...)``, or a token batch of named tensors (``input_ids``,
                ``attention_mask``, ...) for text sources.
            y: Their labels ``(N,)``.
            x_out: The pool batch (the same kind as ``x_in``), or ``None`` without a pool.
            num_outliers: Rows to return.

        Returns:
            New rows of ``x_in``'s kind, ``num_outliers`` of them (or ``None`` when
            ``parts`` is empty); token batches of different lengths (pool rows and
            synthesised ones) are right-padded to the longest with the model's pad
            values. The inputs are left unchanged.

        Raises:
            TypeError: If ``x_in`` or ``x_out`` has the wrong kind.
            ValueError: If a source needs the pool and ``x_out`` is ``None`` or empty,
                or the shapes do not fit.
        """
        tokens = isinstance(x_in, dict)
        if tokens:
            batch_size(x_in, "x_in")
        else:
            check_images(x_in, "x_in")
        check_int(num_outliers, "num_outliers", minimum=0)
        if not self.parts:
            return None
        if x_out is not None:
            _check_pool(x_in, x_out)
        counts = split_counts(num_outliers, [w for _, w in self.parts])
        rows: list[Inputs] = []
        offset = 0
        for (source, _), n in zip(self.parts, counts, strict=True):
            if n == 0:
                continue
            pool_rows = None
            if source.needs_pool:
                m = 0 if x_out is None else batch_size(x_out, "x_out")
                if x_out is None or m == 0:
                    self.validate(has_pool=False)
                    raise ValueError("x_out is empty but the outlier signal needs pool rows")
                idx = (offset + torch.arange(n, device=_device(x_out))) % m
                pool_rows = take_rows(x_out, idx) if offset or n != m else x_out
                offset += n
            out = source(x_in, y, pool_rows, n, self.generator)  # type: ignore[arg-type]
            rows.append(out if tokens else out.to(x_in.dtype))  # type: ignore[union-attr]
        if not rows:
            return _copy(take_rows(x_in, slice(0, 0)))
        if len(rows) == 1:
            return _copy(rows[0])
        return cat_inputs(rows, pad_values=self._pad_values, name="outliers")

    def extra_outlier_logits(self, n_in: int, y: torch.Tensor) -> torch.Tensor | None:
        """Virtual-outlier logits from this step's forward (``None`` without virtual)."""
        if self.virtual is None:
            return None
        return self.virtual.extra_outlier_logits(n_in, y)

    def state_dict(self) -> dict[str, Any]:
        """The virtual outliers' queue (the input-space sources are stateless)."""
        return {"virtual": None if self.virtual is None else self.virtual.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output.

        Raises:
            ValueError: If ``state`` does not match this signal's pieces.
        """
        if not isinstance(state, Mapping) or set(state) != {"virtual"}:
            raise ValueError("state must be a mapping {'virtual': ...} from state_dict()")
        if (state["virtual"] is None) != (self.virtual is None):
            raise ValueError(
                "state and signal disagree on virtual outliers: "
                f"state has {'none' if state['virtual'] is None else 'some'}, the signal "
                f"{'none' if self.virtual is None else 'some'}"
            )
        if self.virtual is not None:
            self.virtual.load_state_dict(state["virtual"])
