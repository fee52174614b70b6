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
options and the seed. The loop writes it into every checkpoint; resuming a checkpoint
whose fingerprint differs (another run in the same ``checkpoint_dir``: other seed, other
``lam``, other k) is refused. To start the new run anyway, give it a new
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
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rejectnet.finetune.checkpoint import CheckpointError

__all__ = ["run_fingerprint", "run_identity", "validate_resume"]

_MAX_LISTED = 5


def _canonical(value: Any) -> Any:
    """A JSON-ready, order-independent form of an options value."""
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, float):
        return repr(value) if not math.isfinite(value) else value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, torch.dtype):
        return str(value)
    return f"{type(value).__module__}.{type(value).__qualname__}"


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
            batch ratio, ...). Values that are not numbers, strings, booleans, ``None``
            or containers of them enter by their type name only.
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
    arch = [[n, list(t.shape), str(t.dtype)] for n, t in model.state_dict().items()]
    doc = {
        "architecture": [type(model).__qualname__, arch],
        "num_classes": num_classes,
        "k": k,
        "objective": objective,
        "options": _canonical(options),
        "seed": seed,
    }
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def run_identity(
    model: nn.Module,
    *,
    num_classes: int | None,
    k: int | None,
    objective: str,
    options: Mapping[str, Any],
    seed: int | None,
) -> dict[str, Any]:
    """The fields to merge into every checkpoint: ``num_classes``, ``k``, ``fingerprint``.

    Takes the same arguments as :func:`run_fingerprint`; :func:`validate_resume` reads
    these fields back (``num_classes`` and ``k`` are omitted when ``None``).
    """
    out: dict[str, Any] = {
        "fingerprint": run_fingerprint(
            model, num_classes=num_classes, k=k, objective=objective, options=options, seed=seed
        ),
    }
    if num_classes is not None:
        out["num_classes"] = num_classes
    if k is not None:
        out["k"] = k
    return out


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
                "architecture, C, k, objective, options or seed)",
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
