"""Reading the batches that users' data loaders yield, the inputs models take and
the logits they give back (:func:`call_model`, :func:`extract_logits`).

**The one rule.** A model input (:data:`Inputs`) is either one tensor, passed as
``model(x)``, or a mapping of named tensors, passed as keyword arguments
``model(**x)`` (Hugging Face style: ``input_ids``, ``attention_mask``,
``token_type_ids``, ``pixel_values`` ...). A loader batch is read as follows:

- a tensor: the input, no labels;
- a tuple or list ``(x,)`` / ``(x, y, ...)``: ``x`` (a tensor or a mapping of named
  tensors) and the labels ``y``;
- a mapping: the labels are the first of :data:`LABEL_KEYS` present (or ``keys[1]``).
  The model inputs are, with ``keys=(input_key, label_key)``, the one tensor under
  ``input_key`` or, when ``input_key`` is a tuple of names, those named tensors; without
  ``keys``, the one tensor under an :data:`INPUT_KEYS` key when the mapping holds nothing
  else but the labels (single-input models, as before), otherwise every key but the
  label key, as named tensors.

Nothing is dropped silently: with ``keys=`` given, a key that is neither named nor the
label raises :class:`ValueError` naming it. :meth:`rejectnet.RejectHead.calibrate`,
:meth:`~rejectnet.RejectHead.fit_temperature`, the fine-tuners and ``evaluate`` all read
batches with :func:`split_inputs` (:func:`split_batch` where an entry point takes one
input tensor only).

Token sequences of different lengths are joined with :func:`cat_inputs`, which right-pads
a key's tensors along the sequence dimension with the model's pad value
(:func:`pad_values_for`) and never truncates.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = [
    "INPUT_KEYS",
    "LABEL_KEYS",
    "BatchKeys",
    "Inputs",
    "batch_size",
    "call_model",
    "cat_inputs",
    "check_keys",
    "extract_logits",
    "input_names",
    "inputs_to",
    "logits_of",
    "pad_values_for",
    "split_batch",
    "split_inputs",
    "take_rows",
]

INPUT_KEYS = ("x", "image", "images", "pixel_values", "input", "inputs")
"""The keys of a single (positional) model input, looked for in this order."""
LABEL_KEYS = ("y", "label", "labels", "target", "targets")
"""The label keys looked for, in this order, in a mapping batch."""

Inputs = torch.Tensor | dict[str, torch.Tensor]
"""What a model takes: one tensor (``model(x)``) or named tensors (``model(**x)``)."""

BatchKeys = tuple[str | tuple[str, ...], str | None]
"""``(input_key, label_key)`` of mapping batches: ``input_key`` one key or a tuple of
keys (named model inputs); ``label_key`` may be ``None``."""

_PAD_FREE_KEYS = ("attention_mask", "token_type_ids", "position_ids", "special_tokens_mask")


def check_keys(keys: Any, name: str = "keys") -> BatchKeys | None:
    """Validate a ``keys=(input_key, label_key)`` argument (``None`` = the defaults).

    Raises:
        TypeError: If ``keys`` is not ``None`` or a pair ``(str | tuple[str, ...], str | None)``.
        ValueError: If a tuple of input keys is empty, repeats a key or holds the label key.

    Example:
        >>> check_keys(("img", "cls"))
        ('img', 'cls')
        >>> check_keys((("input_ids", "attention_mask"), "labels"))
        (('input_ids', 'attention_mask'), 'labels')
    """
    if keys is None:
        return None
    if not isinstance(keys, tuple) or len(keys) != 2:
        raise TypeError(_keys_hint(name, keys))
    xk, yk = keys
    many = isinstance(xk, tuple) and all(isinstance(k, str) for k in xk)
    if not (isinstance(xk, str) or many) or not (yk is None or isinstance(yk, str)):
        raise TypeError(_keys_hint(name, keys))
    if many:
        if not xk or len(set(xk)) != len(xk) or yk in xk:
            raise ValueError(
                f"{name}[0] must name distinct input keys other than the label key; "
                f"got {keys!r:.100}"
            )
        return tuple(xk), yk
    return xk, yk


def _keys_hint(name: str, keys: Any) -> str:
    return (
        f"{name} must be a pair (input_key, label_key): input_key a dict key or a tuple of "
        f"keys passed to the model by name, label_key a key or None, e.g. ('img', 'cls') or "
        f"(('input_ids', 'attention_mask'), 'labels'); got {keys!r:.100}"
    )


def split_batch(
    batch: Any,
    name: str = "batch",
    *,
    keys: BatchKeys | None = None,
    labels: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`split_inputs` for the entry points that take one input tensor.

    Raises:
        TypeError: As :func:`split_inputs`, and if the batch holds named tensors (a model
            called with keyword arguments), which this entry point does not take yet.

    Example:
        >>> import torch
        >>> x, y = split_batch({"img": torch.zeros(2, 3), "cls": [0, 1]}, keys=("img", "cls"))
        >>> x.shape, y.tolist()
        (torch.Size([2, 3]), [0, 1])
    """
    one_key = keys is not None or not isinstance(batch, Mapping)
    if one_key or any(k in batch for k in INPUT_KEYS):
        x, y = split_inputs(batch, name, keys=keys, labels=labels)
        if isinstance(x, torch.Tensor):
            return x, y
        batch = x
    raise TypeError(
        f"{name} is a mapping without an input key; use one of {list(INPUT_KEYS)} (and "
        f"for labels one of {list(LABEL_KEYS)}), got keys {list(batch)}; or name yours with "
        "keys=(input_key, label_key): this entry point takes one input tensor, "
        "not named tensors"
    )


def split_inputs(
    batch: Any,
    name: str = "batch",
    *,
    keys: BatchKeys | None = None,
    labels: bool = True,
) -> tuple[Inputs, torch.Tensor | None]:
    """Split a loader batch into model inputs and (optional) labels, by the module's rule.

    Args:
        batch: What the data loader yielded.
        name: What to call the batch in error messages (e.g. ``"outlier_loader batch"``).
        keys: ``(input_key, label_key)`` for mapping batches whose names differ from the
            defaults; ``input_key`` may be a tuple of keys, ``label_key`` may be ``None``.
        labels: Whether the caller uses labels. When ``False`` they are not read at all
            (so labels of any type, e.g. strings, are ignored) and ``y`` is ``None``.

    Returns:
        ``(x, y)``: ``x`` a tensor or a dict of named tensors, ``y`` ``None`` when the
        batch carries no labels.

    Raises:
        TypeError: If the batch has none of the accepted forms, or a model input is not
            a tensor (the message names the key).
        TypeError: Also if a key named in ``keys`` is missing.
        ValueError: If a key would be dropped (``keys`` given, the key not named in it).

    Example:
        >>> import torch
        >>> x, y = split_inputs({"input_ids": torch.ones(2, 4, dtype=torch.long),
        ...                     "attention_mask": torch.ones(2, 4), "labels": [1, 0]})
        >>> sorted(x), y.tolist()
        (['attention_mask', 'input_ids'], [1, 0])
    """
    x: Any
    y: Any = None
    if isinstance(batch, torch.Tensor):
        x = batch
    elif isinstance(batch, (tuple, list)) and len(batch) > 0:
        x = batch[0]
        y = batch[1] if len(batch) > 1 else None
        if isinstance(x, Mapping):
            x = _named_inputs(x, name, list(x))
    elif isinstance(batch, Mapping):
        x, y = _split_mapping(batch, name, keys, labels)
    else:
        raise TypeError(
            f"{name} must be a Tensor, a tuple (x,) or (x, y), or a dict of named tensors; "
            f"got {type(batch).__name__}"
        )
    if not isinstance(x, (torch.Tensor, dict)):
        raise TypeError(
            f"{name} inputs must be a torch.Tensor or a dict of named tensors, "
            f"got {type(x).__name__}"
        )
    if not labels:
        return x, None
    if y is not None and not isinstance(y, torch.Tensor):
        y = torch.as_tensor(y)
    return x, y


def _split_mapping(
    batch: Mapping[Any, Any], name: str, keys: BatchKeys | None, labels: bool
) -> tuple[Inputs, Any]:
    if keys is not None:
        xk, yk = keys
        named = (xk,) if isinstance(xk, str) else xk
        wanted = [*named, yk] if (labels and yk is not None) else list(named)
        missing = [k for k in wanted if k not in batch]
        if missing:
            raise TypeError(
                f"{name} is a mapping without the keys {keys!r} passed as keys= (no "
                f"{missing[0]!r}); got keys {list(batch)}"
            )
        dropped = [k for k in batch if k not in named and k != yk]
        if dropped:
            raise ValueError(
                f"{name} key {dropped[0]!r} would be dropped: it is neither a model input "
                f"named in keys[0] nor the label key; add it to keys[0] (a tuple of input "
                f"keys) or remove it from the batch; got keys {list(batch)}"
            )
        y = batch[yk] if yk is not None and labels else None
        if isinstance(xk, str):
            return _tensor_input(batch[xk], name, xk), y
        return _named_inputs(batch, name, list(xk)), y
    yk = next((k for k in LABEL_KEYS if k in batch), None)
    rest = [k for k in batch if k != yk]
    if not rest:
        raise TypeError(f"{name} is a mapping without model inputs; got keys {list(batch)}")
    y = batch[yk] if yk is not None else None
    if len(rest) == 1 and rest[0] in INPUT_KEYS:
        return _tensor_input(batch[rest[0]], name, rest[0]), y
    return _named_inputs(batch, name, rest), y


def _tensor_input(value: Any, name: str, key: Any) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}[{key!r}] must be a torch.Tensor, got {type(value).__name__}")
    return value


def _named_inputs(
    batch: Mapping[Any, Any], name: str, names: Sequence[Any]
) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for k in names:
        if not isinstance(k, str):
            raise TypeError(f"{name} keys must be strings (model argument names), got {k!r:.50}")
        out[k] = _tensor_input(batch[k], name, k)
    batch_size(out, name)
    return out


def batch_size(x: Inputs, name: str = "inputs") -> int:
    """The number of rows of a model input.

    Raises:
        TypeError: If ``x`` is neither a tensor nor a non-empty dict of tensors.
        ValueError: If the named tensors disagree on the number of rows, or one is 0-d.

    Example:
        >>> import torch
        >>> batch_size({"input_ids": torch.zeros(3, 5), "attention_mask": torch.ones(3, 5)})
        3
    """
    if isinstance(x, torch.Tensor):
        if x.dim() == 0:
            raise ValueError(f"{name} must have a batch dimension, got a 0-d tensor")
        return int(x.shape[0])
    if not isinstance(x, dict) or not x:
        raise TypeError(
            f"{name} must be a torch.Tensor or a non-empty dict of named tensors, "
            f"got {type(x).__name__}"
        )
    sizes = {}
    for k, v in x.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{name}[{k!r}] must be a torch.Tensor, got {type(v).__name__}")
        if v.dim() == 0:
            raise ValueError(f"{name}[{k!r}] must have a batch dimension, got a 0-d tensor")
        sizes[k] = int(v.shape[0])
    if len(set(sizes.values())) > 1:
        raise ValueError(f"{name} named tensors disagree on the batch size: {sizes}")
    return next(iter(sizes.values()))


def input_names(x: Inputs) -> tuple[str, ...]:
    """The names of a model input's tensors: ``()`` for one tensor.

    Example:
        >>> import torch
        >>> input_names({"input_ids": torch.zeros(1, 2)}), input_names(torch.zeros(1, 2))
        (('input_ids',), ())
    """
    return () if isinstance(x, torch.Tensor) else tuple(x)


def inputs_to(x: Inputs, device: torch.device | str, *, non_blocking: bool = False) -> Inputs:
    """Move a model input to ``device`` (a new dict for named tensors; the caller's is kept).

    Example:
        >>> import torch
        >>> inputs_to({"input_ids": torch.zeros(1, 2)}, "cpu")["input_ids"].device.type
        'cpu'
    """
    if isinstance(x, torch.Tensor):
        return x.to(device, non_blocking=non_blocking)
    return {k: v.to(device, non_blocking=non_blocking) for k, v in x.items()}


def take_rows(x: Inputs, index: slice | torch.Tensor) -> Inputs:
    """Rows ``index`` of a model input (every named tensor alike).

    Example:
        >>> import torch
        >>> take_rows({"a": torch.arange(6).view(3, 2)}, slice(1, 3))["a"].tolist()
        [[2, 3], [4, 5]]
    """
    if isinstance(x, torch.Tensor):
        return x[index]
    return {k: v[index] for k, v in x.items()}


def cat_inputs(
    parts: Sequence[Inputs],
    *,
    pad_values: Mapping[str, int | float] | None = None,
    name: str = "inputs",
) -> Inputs:
    """Join model inputs along the batch dimension, padding sequences to a common length.

    Tensors are concatenated as they are. Named tensors need the same names in every
    part; a name whose tensors differ only in dimension 1 (the sequence length) is
    right-padded to the longest with ``pad_values[name]`` (``0`` when not given), never
    truncated.

    Raises:
        TypeError: If tensors and dicts are mixed, or ``parts`` is empty.
        ValueError: If the names differ between parts, or shapes differ elsewhere than in
            dimension 1 (the message names the key).

    Example:
        >>> import torch
        >>> a = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.ones(1, 3)}
        >>> b = {"input_ids": torch.tensor([[8]]), "attention_mask": torch.ones(1, 1)}
        >>> out = cat_inputs([a, b], pad_values={"input_ids": 0})
        >>> out["input_ids"].tolist(), out["attention_mask"].tolist()
        ([[5, 6, 7], [8, 0, 0]], [[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    """
    if not parts:
        raise TypeError(f"{name}: nothing to join")
    if all(isinstance(p, torch.Tensor) for p in parts):
        return torch.cat(list(parts))  # type: ignore[arg-type]
    if not all(isinstance(p, dict) for p in parts):
        raise TypeError(
            f"{name}: cannot join a tensor input with named-tensor (dict) inputs; give every "
            "loader the same kind of batch"
        )
    names = list(parts[0])  # type: ignore[arg-type]
    for p in parts[1:]:
        diff = set(names) ^ set(p)  # type: ignore[arg-type]
        if diff:
            raise ValueError(
                f"{name}: key {sorted(diff)[0]!r} is in some batches and not in others; "
                f"in-distribution and outlier batches need the same input names, got "
                f"{names} and {list(p)}"
            )
    pads = pad_values or {}
    return {k: _cat_padded([p[k] for p in parts], pads.get(k, 0), f"{name}[{k!r}]") for k in names}  # type: ignore[index]


def _cat_padded(ts: list[torch.Tensor], value: int | float, where: str) -> torch.Tensor:
    shapes = [tuple(t.shape) for t in ts]
    if any(len(s) != len(shapes[0]) or s[2:] != shapes[0][2:] for s in shapes):
        raise ValueError(f"{where}: shapes differ beyond the sequence dimension: {shapes}")
    if len({s[1] for s in shapes if len(s) > 1}) <= 1:
        return torch.cat(ts)
    longest = max(s[1] for s in shapes)
    padded = []
    for t in ts:
        if t.shape[1] < longest:
            fill = t.new_full((t.shape[0], longest - t.shape[1], *t.shape[2:]), value)
            t = torch.cat([t, fill], dim=1)
        padded.append(t)
    return torch.cat(padded)


def pad_values_for(model: nn.Module) -> dict[str, int]:
    """Pad values per input name: the model's ``config.pad_token_id`` for ``input_ids``.

    Masks and type ids pad with 0. Models without a Hugging Face ``config`` pad
    ``input_ids`` with 0.

    Example:
        >>> import torch
        >>> pad_values_for(torch.nn.Linear(2, 2))["input_ids"]
        0
    """
    config = getattr(model, "config", None)
    pad = getattr(config, "pad_token_id", None)
    values = dict.fromkeys(_PAD_FREE_KEYS, 0)
    values["input_ids"] = int(pad) if isinstance(pad, int) else 0
    return values


def call_model(model: nn.Module | Any, x: Inputs) -> Any:
    """Call ``model`` on one input tensor, or on named tensors as keyword arguments.

    When a keyword call fails with a ``TypeError`` because the model's ``forward`` has no
    parameter of that name, the error names the key and how to rename or select keys.

    Example:
        >>> import torch
        >>> call_model(torch.nn.Identity(), torch.ones(1, 2)).shape
        torch.Size([1, 2])
    """
    if isinstance(x, torch.Tensor):
        return model(x)
    try:
        return model(**x)
    except TypeError as err:
        unknown = _unknown_arguments(model, x)
        if unknown:
            raise TypeError(
                f"the model's forward takes no argument {unknown[0]!r} (a key of the batch); "
                "rename it, or pick the model's inputs with keys=(input_keys, label_key)"
            ) from err
        raise


def _unknown_arguments(model: Any, x: Mapping[str, Any]) -> list[str]:
    fn = getattr(model, "forward", model)
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return []
    names = {p.name for p in params if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    return [k for k in x if k not in names]


def extract_logits(output: Any) -> torch.Tensor:
    """Return the logits tensor inside a model output.

    Accepts a tensor, a mapping with a ``"logits"`` key, an object with a ``.logits``
    attribute (Hugging Face ``ModelOutput``), or a tuple/list whose first item is the
    logits tensor.

    Raises:
        TypeError: If no logits tensor can be found.

    Example:
        >>> import torch
        >>> extract_logits({"logits": torch.zeros(2, 3)}).shape
        torch.Size([2, 3])
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and "logits" in output:
        found = output["logits"]
    elif hasattr(output, "logits"):
        found = output.logits
    elif isinstance(output, (tuple, list)) and output:
        found = output[0]
    else:
        found = None
    if not isinstance(found, torch.Tensor):
        raise TypeError(
            "the model returned a "
            f"{type(output).__name__}; rejectnet needs a logits tensor, a dict with a 'logits' "
            "key, an object with a .logits attribute, or a tuple whose first item is the logits"
        )
    return found


def logits_of(model: nn.Module | Any, x: Inputs) -> torch.Tensor:
    """``model``'s logits on ``x``: :func:`call_model`, then :func:`extract_logits`.

    Example:
        >>> import torch
        >>> logits_of(torch.nn.Identity(), {"input": torch.ones(1, 2)}).shape
        torch.Size([1, 2])
    """
    out = model(x) if type(x) is torch.Tensor else call_model(model, x)
    return out if type(out) is torch.Tensor else extract_logits(out)
