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
import json
import math
from collections.abc import Mapping
from typing import Any

from torch import nn

from rejectnet.outliers.signal import fingerprint

__all__ = [
    "describe_changes",
    "object_fingerprint",
    "run_document",
    "run_fingerprint",
    "run_identity",
    "signal_fingerprint",
]

_MAX_LISTED = 5


def object_fingerprint(obj: Any) -> Any:
    """Every option's value of ``obj``, recursively, as JSON types.

    Objects (an outlier signal, its sources, a loss, a pseudo-labeler, an optimizer
    factory) enter through :func:`rejectnet.outliers.signal.fingerprint`, the one
    fingerprint of rejectnet: ``{"class": "module.QualName", "options": {name: value}}``.
    Plain values (numbers, strings, booleans, ``None``) and the dicts and lists that hold
    them stay as they are (a non-finite float becomes ``{"float": "nan"}``).

    Args:
        obj: Any value.

    Returns:
        Numbers, strings, booleans, ``None``, lists and dicts only.

    Example:
        >>> from rejectnet.outliers import ClusterLabeler
        >>> object_fingerprint(ClusterLabeler(temperature=20.0))["options"]
        {'temperature': 20.0, 'iters': 3}
        >>> object_fingerprint({"lam": 5.0, "amp": False})
        {'lam': 5.0, 'amp': False}
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"float": repr(obj)}
    if isinstance(obj, Mapping):
        return {str(k): object_fingerprint(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_asdict"):
        return [object_fingerprint(v) for v in obj]
    return fingerprint(obj)


def signal_fingerprint(signal: Any) -> Any:
    """The outlier signal's fingerprint (:func:`rejectnet.outliers.signal.fingerprint`)."""
    return None if signal is None else fingerprint(signal)


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
        "options": object_fingerprint(options),
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
    elif isinstance(value, dict) and value.get("class") == "function":
        text = str(value.get("name"))
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
