"""Whether a checkpoint fits the run resuming from it, decided before any weight is touched.

:func:`~rejectnet.finetune.checkpoint.read_checkpoint` guarantees a checkpoint is intact
and has every field with the right type. Whether it *fits* is decided here, by
:func:`validate_resume`, a pure function that compares the checkpoint completely with the
live model, optimizer, scheduler and gradient scaler and raises one
:class:`~rejectnet.finetune.checkpoint.CheckpointError` naming the file and everything
that differs (``"k: checkpoint 2, model 3"``), *without touching any of them*. Only when
it passes may the loop call ``load_state_dict``: a k=3 model resumed from a k=2 run is
refused with the caller's weights bit-identical, where ``load_state_dict`` alone would
raise half-way through, after some weights were overwritten.

The run fingerprint (:func:`run_fingerprint`) is a hash of what defines a run: the
architecture (every state-dict name, shape and dtype), C, k, the objective's name, its
options (by value: objects such as the outlier signal, its sources and a pseudo-labeler
enter with every constructor option, recursively, :func:`object_fingerprint`) and the
seed. The loop writes it into every checkpoint, with the document it hashes
(``run_config``); resuming a checkpoint whose fingerprint differs (another run in the
same ``checkpoint_dir``: other seed, other ``lam``, other k, ``Rotate()`` for
``Jigsaw(2)``) is refused, naming what changed. To start the new run anyway, give it a new
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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rejectnet.finetune.checkpoint import CheckpointError
from rejectnet.outliers import signal as _signal_module

__all__ = [
    "describe_changes",
    "object_fingerprint",
    "run_document",
    "run_fingerprint",
    "run_identity",
    "signal_fingerprint",
    "validate_resume",
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


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - _MAX_LISTED} more" if len(names) > _MAX_LISTED else ""
    return ", ".join(repr(n) for n in names[:_MAX_LISTED]) + more


def _model_differences(saved: Mapping[str, torch.Tensor], live: nn.Module) -> list[str]:
    own = live.state_dict()
    out: list[str] = []
    missing = [n for n in own if n not in saved]
    unexpected = [n for n in saved if n not in own]
    if missing:
        out.append(f"model: the checkpoint lacks {_listed(missing)}")
    if unexpected:
        out.append(f"model: the checkpoint has {_listed(unexpected)}, which the model lacks")
    shapes = [n for n in own if n in saved and tuple(saved[n].shape) != tuple(own[n].shape)]
    for n in shapes[:_MAX_LISTED]:
        out.append(
            f"model: {n!r} shape: checkpoint {tuple(saved[n].shape)}, model {tuple(own[n].shape)}"
        )
    if len(shapes) > _MAX_LISTED:
        out.append(f"model: {len(shapes) - _MAX_LISTED} more shapes differ")
    dtypes = [n for n in own if n in saved and n not in shapes and saved[n].dtype != own[n].dtype]
    for n in dtypes[:_MAX_LISTED]:
        out.append(f"model: {n!r} dtype: checkpoint {saved[n].dtype}, model {own[n].dtype}")
    if len(dtypes) > _MAX_LISTED:
        out.append(f"model: {len(dtypes) - _MAX_LISTED} more dtypes differ")
    return out


def _optimizer_differences(saved: Mapping[str, Any], live: torch.optim.Optimizer) -> list[str]:
    groups = saved["param_groups"]
    if len(groups) != len(live.param_groups):
        return [
            f"optimizer: param groups: checkpoint {len(groups)}, optimizer {len(live.param_groups)}"
        ]
    out: list[str] = []
    for i, (g, lg) in enumerate(zip(groups, live.param_groups, strict=True)):
        if len(g["params"]) != len(lg["params"]):
            out.append(
                f"optimizer: param group {i} size: checkpoint {len(g['params'])}, optimizer "
                f"{len(lg['params'])}"
            )
    if out:
        return out
    state = saved["state"]
    for g, lg in zip(groups, live.param_groups, strict=True):
        for pid, param in zip(g["params"], lg["params"], strict=True):
            entry = state.get(pid)
            if entry is None:
                continue
            if not isinstance(entry, Mapping):
                out.append(f"optimizer: the state of parameter {pid} is not a dict")
                continue
            for key, value in entry.items():
                if (
                    isinstance(value, torch.Tensor)
                    and value.ndim > 0
                    and tuple(value.shape) != tuple(param.shape)
                ):
                    out.append(
                        f"optimizer: state {key!r} of parameter {pid} shape: checkpoint "
                        f"{tuple(value.shape)}, parameter {tuple(param.shape)}"
                    )
    return out[:_MAX_LISTED]


def _presence(name: str, saved: Any, live: Any, hint: str) -> list[str]:
    if (saved is None) == (live is None):
        return []
    has = "has" if saved is not None else "has no"
    uses = "uses one" if live is not None else "uses none"
    return [f"{name}: the checkpoint {has} {name} state but this run {uses} ({hint})"]


def _saved_k(ckpt: Mapping[str, Any]) -> int | None:
    if isinstance(ckpt.get("k"), int):
        return int(ckpt["k"])
    weights = ckpt["model"].get("score_weights")  # a RejectHead's state
    if isinstance(weights, torch.Tensor) and weights.ndim == 1:
        return int(weights.shape[0])
    return None


def validate_resume(
    ckpt: Mapping[str, Any],
    *,
    path: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    num_classes: int | None,
    k: int | None,
    scheduler: Any = None,
    scaler: torch.amp.GradScaler | None = None,
    fingerprint: str | None = None,
    world_size: int | None = None,
    run_config: str | None = None,
) -> None:
    """Check that ``ckpt`` fits the live run completely, touching nothing.

    Compared, in this order: C and k; every model state-dict key, shape and dtype; the
    optimizer's number of param groups, their sizes and the shape of every per-parameter
    state tensor; whether a scheduler and a gradient scaler are used on both sides; the
    number of processes; the run fingerprint (when both sides have one). All the
    differences found are listed in one message.

    Args:
        ckpt: A checkpoint as returned by
            :func:`~rejectnet.finetune.checkpoint.read_checkpoint` (already checked for
            its format and field types).
        path: The file it came from, for the message.
        model: The module being trained (not a ``DistributedDataParallel`` wrapper).
        optimizer: The live optimizer, already built over ``model``'s parameters.
        num_classes: The live C (``None`` when unknown: the model's shapes still
            compare it).
        k: The live number of reject classes (``None`` for a plain classifier).
        scheduler: The live learning-rate scheduler, or ``None``.
        scaler: The live ``GradScaler`` (fp16 mixed precision), or ``None``.
        fingerprint: The live run's :func:`run_fingerprint`, or ``None`` to skip it.
        world_size: The live number of processes (``None`` to skip this check).
        run_config: The live run's document as JSON text (``run_identity``'s
            ``run_config``); with the checkpoint's, a changed fingerprint names what
            changed (``"outlier_signal.parts[0][0]: checkpoint Jigsaw(grid=2), this run
            Rotate(angles=[90, 270])"``).

    Raises:
        CheckpointError: Naming ``path`` and every difference, e.g.
            ``"k: checkpoint 2, model 3"``; ``field`` is the first one's (``"k"``,
            ``"num_classes"``, ``"model"``, ``"optimizer"``, ``"scheduler"``,
            ``"scaler"``, ``"world_size"`` or ``"fingerprint"``).
    """
    diffs: list[tuple[str, str]] = []
    saved_c = ckpt.get("num_classes")
    if num_classes is not None and isinstance(saved_c, int) and saved_c != num_classes:
        diffs.append(("num_classes", f"C (num_classes): checkpoint {saved_c}, model {num_classes}"))
    saved_k = _saved_k(ckpt)
    if saved_k != k and (saved_k is not None or "k" in ckpt):
        diffs.append(("k", f"k: checkpoint {saved_k}, model {k}"))
    diffs += [("model", d) for d in _model_differences(ckpt["model"], model)]
    diffs += [("optimizer", d) for d in _optimizer_differences(ckpt["optimizer"], optimizer)]
    diffs += [
        ("scheduler", d)
        for d in _presence("scheduler", ckpt["scheduler"], scheduler, "same schedule options")
    ]
    diffs += [
        ("scaler", d)
        for d in _presence("scaler", ckpt["scaler"], scaler, "amp='fp16' uses a GradScaler")
    ]
    if world_size is not None and ckpt["world_size"] != world_size:
        diffs.append(
            ("world_size", f"processes: checkpoint {ckpt['world_size']}, this run {world_size}")
        )
    saved_fp = ckpt.get("fingerprint")
    if fingerprint is not None and saved_fp is not None and saved_fp != fingerprint:
        diffs.append(
            (
                "fingerprint",
                "run fingerprint: the checkpoint is from another run (a different "
                "architecture, C, k, objective, options or seed)"
                + describe_changes(ckpt.get("run_config"), run_config),
            )
        )
    if not diffs:
        return
    raise CheckpointError(
        f"checkpoint {str(path)!r} does not fit this run, so nothing was restored and the "
        f"model, optimizer and scaler are untouched: {'; '.join(d for _, d in diffs)}. Resume "
        "with the settings that wrote it, or start this run in a new checkpoint_dir "
        "(or with resume=False)",
        path,
        diffs[0][0],
    )
