"""What defines a training run: its document, its fingerprint, and what changed.

The run fingerprint (:func:`run_fingerprint`) is a hash of what defines a run: the
architecture (every state-dict name, shape and dtype), C, k, the objective's name, its
options (by value: objects such as the outlier signal, its sources and a pseudo-labeler
enter with every constructor option, recursively, :func:`object_fingerprint`) and the
seed. The loop writes it into every checkpoint, with the document it hashes
(``run_config``); resuming a checkpoint whose fingerprint differs (another run in the
same ``checkpoint_dir``: other seed, other ``lam``, other k, ``Rotate()`` for
``Jigsaw(2)``) is refused by :func:`rejectnet.finetune.resume.validate_resume`, naming
what changed (:func:`describe_changes`). To start the new run anyway, give it a new
``checkpoint_dir`` (or pass ``resume=False``, which overwrites the old run's checkpoints
as it goes). Checkpoints written before fingerprints existed carry none and are not
checked for it; with ``seed=None`` two runs differ only in their random draws, which the
fingerprint cannot see.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from rejectnet.outliers import signal as _signal_module

__all__ = [
    "describe_changes",
    "object_fingerprint",
    "run_document",
    "run_fingerprint",
    "run_identity",
    "signal_fingerprint",
]

_MAX_LISTED = 5
_MAX_DEPTH = 8


def _qualname(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _constructor_names(cls: type) -> list[str]:
    """The named parameters of ``cls.__init__`` (``*args``/``**kwargs`` left out)."""
    try:
        params = inspect.signature(cls.__init__).parameters  # type: ignore[misc]
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [n for n, p in params.items() if n != "self" and p.kind in kinds]


def _tensor_doc(t: torch.Tensor) -> dict[str, Any]:
    data = t.detach().to("cpu").contiguous()
    raw = data.view(torch.uint8) if data.numel() and data.dtype != torch.bool else data
    digest = hashlib.sha256(raw.numpy().tobytes() if raw.numel() else b"").hexdigest()[:16]
    return {"tensor": list(t.shape), "dtype": str(t.dtype), "sha256": digest}


def object_fingerprint(obj: Any, *, _depth: int = 0, _seen: frozenset[int] = frozenset()) -> Any:
    """Every constructor option's VALUE of ``obj``, recursively, as a JSON-ready dict.

    The generic fingerprint of an object that defines a run (an outlier signal, its
    sources, a loss, a pseudo-labeler): ``{"class": "module.QualName", "options":
    {name: value}}`` where the options are the constructor's named parameters read back
    from the attribute of the same name (or ``_name``), plus the public attributes when
    a parameter has no such attribute. Nested objects get their own dict; tensors enter
    as shape, dtype and a hash of their bytes; a ``torch.Generator`` as its device (its
    state is what it draws, not an option); functions and classes by qualified name.

    This is finetune's fallback for :func:`rejectnet.outliers.signal.fingerprint`, used
    for the outlier signal when that function does not exist, and for the objective.

    Args:
        obj: Any value.

    Returns:
        Numbers, strings, booleans, ``None``, lists and dicts only.

    Example:
        >>> from rejectnet.outliers import ClusterLabeler
        >>> object_fingerprint(ClusterLabeler(temperature=20.0))["options"]
        {'temperature': 20.0, 'iters': 3}
    """
    if value_is_plain(obj):
        return _plain(obj)
    if isinstance(obj, torch.Tensor):
        return _tensor_doc(obj)
    if isinstance(obj, (torch.dtype, torch.device)):
        return str(obj)
    if isinstance(obj, torch.Generator):
        return {"class": "torch.Generator", "device": str(obj.device)}
    if id(obj) in _seen or _depth > _MAX_DEPTH:
        return {"class": _qualname(obj), "options": "..."}
    seen = _seen | {id(obj)}

    def walk(v: Any) -> Any:
        return object_fingerprint(v, _depth=_depth + 1, _seen=seen)

    if isinstance(obj, Mapping):
        return {str(k): walk(v) for k, v in obj.items()}  # the hash sorts the keys
    if isinstance(obj, (list, tuple, set, frozenset)):
        items = sorted(obj, key=repr) if isinstance(obj, (set, frozenset)) else obj
        return [walk(v) for v in items]
    if isinstance(obj, type) or inspect.isroutine(obj):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
    options: dict[str, Any] = {}
    names = _constructor_names(type(obj))
    missing = False
    for name in names:
        for attr in (name, f"_{name}"):
            if hasattr(obj, attr):
                options[name] = walk(getattr(obj, attr))
                break
        else:
            missing = True
    if missing or not names:
        public = getattr(obj, "__dict__", {})
        for key, value in public.items():
            if not key.startswith("_") and key not in options and key != "training":
                options[key] = walk(value)
    return {"class": _qualname(obj), "options": options}


def value_is_plain(value: Any) -> bool:
    """Whether ``value`` is a number, string, boolean or ``None`` (JSON as it is)."""
    return value is None or isinstance(value, (bool, int, float, str))


def _plain(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


def signal_fingerprint(signal: Any) -> Any:
    """The outlier signal's fingerprint: every option's value, recursively.

    Calls :func:`rejectnet.outliers.signal.fingerprint` where it exists and
    :func:`object_fingerprint` otherwise.
    """
    if signal is None:
        return None
    own = getattr(_signal_module, "fingerprint", None)
    return own(signal) if callable(own) else object_fingerprint(signal)


def _canonical(value: Any) -> Any:
    """A JSON-ready, order-independent form of an options value (objects by value)."""
    return object_fingerprint(value)


def run_document(
    model: nn.Module,
    *,
    num_classes: int | None,
    k: int | None,
    objective: str,
    options: Mapping[str, Any],
    seed: int | None,
) -> dict[str, Any]:
    """What defines a training run, as a JSON-ready dict (hashed by :func:`run_fingerprint`).

    Takes the arguments of :func:`run_fingerprint`. Every option enters by its value,
    objects (an outlier signal, a labeler, a loss) as every constructor option's value,
    recursively (:func:`object_fingerprint`).
    """
    arch = [[n, list(t.shape), str(t.dtype)] for n, t in model.state_dict().items()]
    return {
        "architecture": [type(model).__qualname__, arch],
        "num_classes": num_classes,
        "k": k,
        "objective": objective,
        "options": _canonical(options),
        "seed": seed,
    }


def _document_text(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def run_fingerprint(
    model: nn.Module,
    *,
    num_classes: int | None,
    k: int | None,
    objective: str,
    options: Mapping[str, Any],
    seed: int | None,
) -> str:
    """A hash of what defines a training run, written into its checkpoints.

    Args:
        model: The module being trained; its architecture enters as every state-dict
            name, shape and dtype (not the values, which change as it trains).
        num_classes: C (``None`` if unknown; the architecture still holds it).
        k: The number of reject classes (``None`` for a plain classifier).
        objective: The objective's name (``"rejectnet"``, ``"outlier_exposure"``, ...).
        options: The options that change what is trained (``lam``, ``lr``, ``epochs``,
            batch ratio, the outlier signal, ...). Every value counts: objects such as
            ``Jigsaw(2)`` or ``ClusterLabeler(temperature=20)`` enter with every
            constructor option's value (:func:`object_fingerprint`), not their type name.
        seed: The run's seed.

    Returns:
        A 64-character hex string.

    Example:
        >>> from torch import nn
        >>> a = run_fingerprint(nn.Linear(4, 3), num_classes=3, k=2, objective="rejectnet",
        ...                     options={"lam": 5.0}, seed=0)
        >>> b = run_fingerprint(nn.Linear(4, 3), num_classes=3, k=2, objective="rejectnet",
        ...                     options={"lam": 5.0}, seed=1)
        >>> len(a), a == b
        (64, False)
    """
    doc = run_document(
        model, num_classes=num_classes, k=k, objective=objective, options=options, seed=seed
    )
    return hashlib.sha256(_document_text(doc).encode()).hexdigest()


def run_identity(
    model: nn.Module,
    *,
    num_classes: int | None,
    k: int | None,
    objective: str,
    options: Mapping[str, Any],
    seed: int | None,
) -> dict[str, Any]:
    """The fields to merge into every checkpoint: num_classes, k, fingerprint, run_config.

    Takes the same arguments as :func:`run_fingerprint`; :func:`validate_resume` reads
    these fields back (``num_classes`` and ``k`` are omitted when ``None``).
    ``run_config`` is :func:`run_document` as JSON text, so that a refused resume can
    name what changed.
    """
    doc = run_document(
        model, num_classes=num_classes, k=k, objective=objective, options=options, seed=seed
    )
    out: dict[str, Any] = {
        "fingerprint": hashlib.sha256(_document_text(doc).encode()).hexdigest(),
        "run_config": json.dumps(doc, separators=(",", ":")),  # in the constructors' order
    }
    if num_classes is not None:
        out["num_classes"] = num_classes
    if k is not None:
        out["k"] = k
    return out


def _render(value: Any, limit: int = 120) -> str:
    """A short, readable form of a document value: ``Jigsaw(grid=2)``."""
    if isinstance(value, dict) and isinstance(value.get("class"), str) and "options" in value:
        opts = value["options"]
        inner = (
            ", ".join(f"{k}={_render(v, limit)}" for k, v in opts.items())
            if isinstance(opts, dict)
            else str(opts)
        )
        text = f"{value['class'].rsplit('.', 1)[-1]}({inner})"
    elif isinstance(value, dict) and "tensor" in value:
        text = f"tensor{tuple(value['tensor'])} {value.get('dtype')} #{value.get('sha256')}"
    elif isinstance(value, list):
        text = "[" + ", ".join(_render(v, limit) for v in value) + "]"
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _path_name(path: str) -> str:
    for prefix, name in (("options.train.", ""), ("options.objective.", "objective ")):
        if path.startswith(prefix):
            return name + path[len(prefix) :]
    return path


def _document_diffs(saved: Any, live: Any, path: str = "") -> list[str]:
    """Where two run documents differ, as ``"path: checkpoint A, this run B"`` lines."""
    same_class = not (
        isinstance(saved, dict)
        and isinstance(live, dict)
        and saved.get("class") != live.get("class")
    )
    if isinstance(saved, dict) and isinstance(live, dict) and same_class:
        out: list[str] = []
        is_object = "class" in saved
        for key in list(saved) + [k for k in live if k not in saved]:
            if is_object and key == "options":
                sub = path  # an object's options read as its attributes: signal.grid
            else:
                sub = f"{path}.{key}" if path else str(key)
            out += _document_diffs(saved.get(key), live.get(key), sub)
        return out
    if isinstance(saved, list) and isinstance(live, list) and len(saved) == len(live):
        out = []
        for i, (a, b) in enumerate(zip(saved, live, strict=True)):
            out += _document_diffs(a, b, f"{path}[{i}]")
        return out
    if saved == live:
        return []
    name = _path_name(path) or "run"
    return [f"{name}: checkpoint {_render(saved)}, this run {_render(live)}"]


def describe_changes(saved_config: Any, live_config: str | None) -> str:
    """What differs between a checkpoint's ``run_config`` and this run's, for a message.

    Returns:
        ``"; what changed: lam: checkpoint 5.0, this run 1.0"`` or, when either side
        records no document (a checkpoint from an older rejectnet), ``""``.
    """
    if not isinstance(saved_config, str) or live_config is None:
        return ""
    try:
        saved, live = json.loads(saved_config), json.loads(live_config)
    except ValueError:
        return ""
    diffs = _document_diffs(saved, live)
    if not diffs:
        return ""
    more = f" and {len(diffs) - _MAX_LISTED} more" if len(diffs) > _MAX_LISTED else ""
    return "; what changed: " + "; ".join(diffs[:_MAX_LISTED]) + more
