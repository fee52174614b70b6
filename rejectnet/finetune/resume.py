"""Saving a run's state into a checkpoint, and restoring it only after checking it fits.

:func:`~rejectnet.finetune.checkpoint.read_checkpoint` guarantees a checkpoint is intact
and has every field with the right type. Whether it *fits* is decided here, by
:func:`validate_resume`, a pure function that compares the checkpoint completely with the
live model, optimizer, scheduler and gradient scaler and raises one
:class:`~rejectnet.finetune.checkpoint.CheckpointError` naming the file and everything
that differs (``"k: checkpoint 2, model 3"``), *without touching any of them*, and by
:func:`check_restorable`, which adds the run's name, epochs and outlier signal. Only when
both pass does :func:`restore` call ``load_state_dict``: a k=3 model resumed from a k=2
run is refused with the caller's weights bit-identical, where ``load_state_dict`` alone
would raise half-way through, after some weights were overwritten. :func:`capture` is
the other direction: what a checkpoint holds of the run (:class:`RunState`).

The run's identity (its fingerprint and the document it hashes) is
:mod:`rejectnet.finetune.fingerprint`; its names are importable from here too.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rejectnet.finetune.checkpoint import CHECKPOINT_FORMAT, CheckpointError
from rejectnet.finetune.fingerprint import (
    describe_changes,
    object_fingerprint,
    run_document,
    run_fingerprint,
    run_identity,
    signal_fingerprint,
)
from rejectnet.finetune.history import EpochStats, History
from rejectnet.finetune.optim import OptimizerStep
from rejectnet.finetune.rng import rng_state, set_rng_state
from rejectnet.finetune.streams import EpochStream, OutlierStream

__all__ = [
    "RankState",
    "RunState",
    "capture",
    "check_restorable",
    "describe_changes",
    "object_fingerprint",
    "restore",
    "run_document",
    "run_fingerprint",
    "run_identity",
    "signal_fingerprint",
    "validate_resume",
]

_MAX_LISTED = 5


@dataclass
class RunState:
    """Where a run stands: counters, history, and the mid-epoch position to resume at.

    Attributes:
        name: The run's name.
        epochs: Epochs of the run.
        epoch: The current 0-based epoch.
        step: Optimizer steps taken so far.
        history: Completed epochs.
        skip: In-distribution batches of the current epoch already done (resume).
        epoch_rng: RNG state the current epoch's loader was started from (resume).
        acc: The current epoch's accumulated sums (resume), or ``None``.
    """

    name: str
    epochs: int
    epoch: int = 0
    step: int = 0
    history: History | None = None
    skip: int = 0
    epoch_rng: torch.Tensor | None = None
    acc: dict[str, torch.Tensor] | None = None


def capture(
    run: RunState,
    *,
    model: nn.Module,
    opt: OptimizerStep,
    in_stream: EpochStream,
    out_stream: OutlierStream | None,
    acc: dict[str, torch.Tensor] | None,
    signal: Any,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The shared and the per-rank parts of a checkpoint.

    Args:
        run: The run's counters.
        model: The module being trained.
        opt: The optimiser side (optimizer, schedule, scaler).
        in_stream: The in-distribution stream.
        out_stream: The outlier stream, or ``None``.
        acc: The epoch's sums when saving mid-epoch, else ``None``.
        signal: The outlier signal (its ``state_dict`` is saved per rank), or ``None``.

    Returns:
        ``(shared, own)``: rank 0 writes ``{**shared, **own}`` plus every rank's ``own``.
    """
    mid_epoch = acc is not None
    own: dict[str, Any] = {
        "epoch_rng": in_stream.start_rng if mid_epoch else None,
        "acc": acc,
        "rng": rng_state(),
        "outliers": out_stream.state_dict() if out_stream is not None else None,
        "signal": signal.state_dict() if signal is not None else None,
    }
    assert run.history is not None
    shared: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "name": run.name,
        "epochs": run.epochs,
        "epoch": run.epoch,
        "step": run.step,
        "batch_in_epoch": in_stream.position if mid_epoch else 0,
        "model": model.state_dict(),
        **opt.state_dict(),
        "history": [vars(e).copy() for e in run.history.epochs],
    }
    return shared, own


def check_restorable(
    ckpt: dict[str, Any],
    path: Path,
    *,
    rank: int,
    run: RunState,
    model: nn.Module,
    opt: OptimizerStep,
    signal: Any,
    fingerprint: str | None = None,
    run_config: str | None = None,
) -> None:
    """Refuse a checkpoint that does not fit this run, touching nothing.

    Everything a resume loads is checked first: the run's name and epochs,
    :func:`~rejectnet.finetune.resume.validate_resume` (C, k, every model tensor, the
    optimizer, schedule, scaler, the run fingerprint naming what changed), whether both
    sides use an outlier signal, and whether the saved signal state loads into a copy of
    this run's signal (a signal with ``VirtualOutliers`` added is refused here, not
    after the weights were loaded). The model, optimizer, signal and RNGs are untouched.

    Raises:
        CheckpointError: Naming ``path`` and what does not fit.
    """
    if ckpt.get("name") != run.name or ckpt.get("epochs") != run.epochs:
        raise CheckpointError(
            f"{path}: the checkpoint is from a different run ({ckpt.get('name')}, "
            f"{ckpt.get('epochs')} epochs) than this one ({run.name}, {run.epochs} epochs); "
            "use another checkpoint_dir or resume=False"
        )
    validate_resume(
        ckpt,
        path=path,
        model=model,
        optimizer=opt.optimizer,
        scheduler=opt.scheduler,
        scaler=opt.scaler,
        num_classes=getattr(model, "num_classes", None),
        k=getattr(model, "k", None),
        fingerprint=fingerprint,
        run_config=run_config,
    )
    _check_signal(_rank_state(ckpt, rank).get("signal"), signal, path)


def _rank_state(ckpt: Mapping[str, Any], rank: int) -> Mapping[str, Any]:
    """This rank's RNG, stream and signal state (``rank_states[rank]`` when several)."""
    return ckpt["rank_states"][rank] if "rank_states" in ckpt else ckpt


def _check_signal(saved: Any, signal: Any, path: Path) -> None:
    """Both sides use an outlier signal or neither, and the saved state loads into a copy."""
    if (saved is None) != (signal is None):
        raise CheckpointError(
            f"{path}: the checkpoint was written "
            f"{'with' if saved is not None else 'without'} an outlier_signal but "
            f"this run has {'one' if signal is not None else 'none'}; nothing was restored. "
            "Use the same options",
            path,
            "signal",
        )
    if signal is not None:
        try:
            copy.deepcopy(signal).load_state_dict(saved)
        except (ValueError, TypeError, KeyError, RuntimeError) as err:
            raise CheckpointError(
                f"{path}: the checkpoint's outlier-signal state does not fit this run's "
                f"outlier_signal ({err}); nothing was restored. Use the same outlier_signal",
                path,
                "signal",
            ) from None


def restore(
    ckpt: dict[str, Any],
    path: Path,
    *,
    rank: int,
    run: RunState,
    model: nn.Module,
    opt: OptimizerStep,
    out_stream: OutlierStream | None,
    signal: Any,
    device: torch.device,
    fingerprint: str | None = None,
    run_config: str | None = None,
    checked: bool = False,
) -> None:
    """Check the checkpoint against this run completely, then load it into the run.

    Args:
        ckpt: The checkpoint's contents.
        path: Its file.
        rank: This process's rank (picks its ``rank_states`` entry).
        run: The run's counters, updated in place.
        model: The live module.
        opt: The optimiser side.
        out_stream: The outlier stream, or ``None``.
        signal: The outlier signal, or ``None``.
        device: The training device.
        fingerprint: This run's :func:`~rejectnet.finetune.fingerprint.run_fingerprint`
            (``None``: not compared).
        run_config: This run's settings as JSON text (names what changed on refusal).
        checked: ``True`` when :func:`check_restorable` already passed for these
            arguments (the fine-tuner checks before seeding, and loads after).

    Raises:
        CheckpointError: If the checkpoint is from another run (name, epochs) or does not
            fit the model; nothing has been loaded then.
    """
    if not checked:
        checks = {"fingerprint": fingerprint, "run_config": run_config}
        check_restorable(
            ckpt, path, rank=rank, run=run, model=model, opt=opt, signal=signal, **checks
        )
    own = _rank_state(ckpt, rank)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt)
    run.epoch, run.step = int(ckpt["epoch"]), int(ckpt["step"])
    run.history = History([EpochStats(**e) for e in ckpt["history"]])
    if out_stream is not None and own.get("outliers") is not None:
        out_stream.load_state_dict(own["outliers"])
    if signal is not None:
        signal.load_state_dict(own["signal"])
    set_rng_state(own["rng"])
    acc = own.get("acc")
    run.acc = {k: v.to(device) for k, v in acc.items()} if acc is not None else None
    run.skip = int(ckpt["batch_in_epoch"])
    run.epoch_rng = own.get("epoch_rng")


RankState = dict[str, Any]
"""The per-rank part of a checkpoint (RNG, stream positions, mid-epoch sums, signal)."""


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


def _shape_differences(
    ckpt: Mapping[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    num_classes: int | None,
    k: int | None,
) -> list[tuple[str, str]]:
    """``(field, difference)`` of C, k, the model's tensors and the optimizer's state."""
    diffs: list[tuple[str, str]] = []
    saved_c = ckpt.get("num_classes")
    if num_classes is not None and isinstance(saved_c, int) and saved_c != num_classes:
        diffs.append(("num_classes", f"C (num_classes): checkpoint {saved_c}, model {num_classes}"))
    saved_k = _saved_k(ckpt)
    if saved_k != k and (saved_k is not None or "k" in ckpt):
        diffs.append(("k", f"k: checkpoint {saved_k}, model {k}"))
    diffs += [("model", d) for d in _model_differences(ckpt["model"], model)]
    diffs += [("optimizer", d) for d in _optimizer_differences(ckpt["optimizer"], optimizer)]
    return diffs


def _setting_differences(
    ckpt: Mapping[str, Any],
    scheduler: Any,
    scaler: torch.amp.GradScaler | None,
    world_size: int | None,
    fingerprint: str | None,
    run_config: str | None,
) -> list[tuple[str, str]]:
    """``(field, difference)`` of the schedule, scaler, processes and run fingerprint."""
    diffs: list[tuple[str, str]] = []
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
    return diffs


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
    diffs = _shape_differences(ckpt, model, optimizer, num_classes, k)
    diffs += _setting_differences(ckpt, scheduler, scaler, world_size, fingerprint, run_config)
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
