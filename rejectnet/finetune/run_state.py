"""The run's state in a checkpoint: what is saved, and restoring it only after checking it.

``restore`` validates the WHOLE checkpoint against the live run first
(:func:`rejectnet.finetune.resume.validate_resume`: C, k, every model tensor, the
optimizer, schedule and scaler, the world size and the run fingerprint), and only then
loads anything, so a checkpoint that does not fit leaves the caller's weights
bit-identical.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rejectnet.finetune.checkpoint import CHECKPOINT_FORMAT, CheckpointError
from rejectnet.finetune.history import EpochStats, History
from rejectnet.finetune.optim import OptimizerStep
from rejectnet.finetune.resume import validate_resume
from rejectnet.finetune.rng import rng_state, set_rng_state
from rejectnet.finetune.streams import EpochStream, OutlierStream

__all__ = ["RankState", "RunState", "capture", "check_restorable", "restore"]


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
    own = ckpt["rank_states"][rank] if "rank_states" in ckpt else ckpt
    if (own.get("signal") is None) != (signal is None):
        raise CheckpointError(
            f"{path}: the checkpoint was written "
            f"{'with' if own.get('signal') is not None else 'without'} an outlier_signal but "
            f"this run has {'one' if signal is not None else 'none'}; nothing was restored. "
            "Use the same options",
            path,
            "signal",
        )
    if signal is not None:
        try:
            copy.deepcopy(signal).load_state_dict(own["signal"])
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
        fingerprint: This run's :func:`rejectnet.finetune.resume.run_fingerprint`, or
            ``None`` to skip that comparison.
        run_config: This run's settings as JSON text (names what changed on refusal).
        checked: ``True`` when :func:`check_restorable` already passed for these
            arguments (the fine-tuner checks before seeding, and loads after).

    Raises:
        CheckpointError: If the checkpoint is from another run (name, epochs) or does not
            fit the model; nothing has been loaded then.
    """
    if not checked:
        check_restorable(
            ckpt,
            path,
            rank=rank,
            run=run,
            model=model,
            opt=opt,
            signal=signal,
            fingerprint=fingerprint,
            run_config=run_config,
        )
    own = ckpt["rank_states"][rank] if "rank_states" in ckpt else ckpt
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
