"""What a fit decides before any weight changes: :func:`plan_run` and its :class:`Plan`.

:func:`plan_run` resolves the device and the distributed context, runs the pre-flight
checks, finds the checkpoint to resume from (rank 0 first), computes the run's identity
(its fingerprint, written into every checkpoint), checks the number of processes, picks
the sampler seed and shards the loaders. Nothing here touches a weight, an optimizer or
an RNG that the run draws from; :class:`~rejectnet.finetune.run.Run` is built from the
plan.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rejectnet._batches import BatchKeys
from rejectnet._inference import module_device
from rejectnet.finetune import distributed as dist_utils
from rejectnet.finetune.batching import pad_values_of
from rejectnet.finetune.checkpoint import (
    CheckpointError,
    LoadedCheckpoint,
    check_writable,
    find_latest,
)
from rejectnet.finetune.fingerprint import object_fingerprint, run_identity, signal_fingerprint
from rejectnet.finetune.objectives import Objective
from rejectnet.finetune.optim import choose_optimizer
from rejectnet.finetune.options import TrainOptions
from rejectnet.finetune.preflight import Preflight, preflight

__all__ = [
    "NOT_IN_FINGERPRINT",
    "Plan",
    "RunSpec",
    "find_checkpoint",
    "identity_of",
    "log_main",
    "plan_run",
    "synced_batchnorm",
]

logger = logging.getLogger("rejectnet")

NOT_IN_FINGERPRINT = frozenset(
    {
        "device",
        "checkpoint_dir",
        "checkpoint_every",
        "progress",
        "callbacks",
        "sync_batchnorm",
        "channels_last",
        "keys",
    }
)
"""Options that do not change what is trained (left out of the run fingerprint)."""


@dataclass(frozen=True)
class RunSpec:
    """What the caller asked for: the run's name, model, objective, options and keys."""

    name: str
    model: nn.Module
    objective: Objective
    options: TrainOptions
    keys: BatchKeys | None


@dataclass(frozen=True)
class Plan:
    """What a fit decided before any weight changes.

    Attributes:
        ctx: The distributed context (rank 0 of 1 when not distributed).
        device: The training device.
        pre: What the pre-flight checks found (C, reject units, outliers used).
        pads: Pad value per input name (named token sequences).
        checkpoint_dir: Where checkpoints go, or ``None``.
        resume: Whether the caller asked to resume.
        found: The checkpoint to resume from, or ``None``.
        identity: num_classes, k, fingerprint and run_config, written into every
            checkpoint.
        sampler_seed: The seed of the ``DistributedSampler`` orders.
        in_loader: The in-distribution loader this rank iterates.
        outlier_loader: The outlier loader this rank iterates, or ``None``.
        steps_per_epoch: Batches per epoch on this rank (the same on every rank).
    """

    ctx: dist_utils.DistContext
    device: torch.device
    pre: Preflight
    pads: dict[str, int]
    checkpoint_dir: Path | None
    resume: bool
    found: LoadedCheckpoint | None
    identity: dict[str, Any]
    sampler_seed: int
    in_loader: Iterable[Any]
    outlier_loader: Iterable[Any] | None
    steps_per_epoch: int


def log_main(ctx: dist_utils.DistContext, msg: str, *args: Any) -> None:
    """Log on the ``"rejectnet"`` logger, from rank 0 only."""
    if ctx.is_main:
        logger.info(msg, *args)


def identity_of(spec: RunSpec, num_classes: int) -> dict[str, Any]:
    """num_classes, k and the run fingerprint, written into every checkpoint."""
    options = spec.options
    opts = {
        f.name: getattr(options, f.name)
        for f in dataclasses.fields(options)
        if f.name not in NOT_IN_FINGERPRINT
    }
    choice = choose_optimizer(spec.model, options)
    if choice.name != "factory":  # the optimizer as it runs, defaults filled in
        opts.update(optimizer=choice.name, lr=choice.lr, weight_decay=choice.weight_decay)
    opts["outlier_signal"] = signal_fingerprint(options.outlier_signal)
    return run_identity(
        spec.model,
        num_classes=num_classes,
        k=getattr(spec.model, "k", None),
        objective=f"{spec.name}:{type(spec.objective).__qualname__}",
        options={"train": opts, "objective": object_fingerprint(spec.objective)},
        seed=options.seed,
    )


def find_checkpoint(
    directory: Path, ctx: dist_utils.DistContext, device: torch.device
) -> LoadedCheckpoint | None:
    """The checkpoint every rank resumes from (rank 0 reads first), or ``None``.

    Raises:
        CheckpointError: On every rank, when rank 0 cannot use the checkpoints.
    """
    found = None
    # rank 0 first: reading may move a corrupted file aside, which the others see
    error: CheckpointError | None = None
    if ctx.is_main:
        try:
            found = find_latest(directory)
        except CheckpointError as err:
            error = err  # told to the other ranks first, so that none hangs
    if dist_utils.broadcast_int(int(error is not None), ctx, device):
        if error is not None:
            raise error
        raise CheckpointError(
            f"{directory}: rank 0 could not use the checkpoints there (its error "
            "says why); nothing was restored"
        )
    dist_utils.barrier(ctx, device)
    if not ctx.is_main:
        found = find_latest(directory)
    dist_utils.agree(
        -1 if found is None else int(found.state.get("step", -1)),
        ctx,
        device,
        "the checkpoint to resume from (checkpoint_dir must be on a filesystem "
        "every rank can read)",
    )
    return found


def _checkpoint_dir(options: TrainOptions, resume: bool) -> Path | None:
    directory = options.checkpoint_path
    if directory is not None:
        check_writable(directory)
    elif resume:
        raise ValueError("resume=True needs checkpoint_dir to be set")
    return directory


def _check_world(found: LoadedCheckpoint | None, ctx: dist_utils.DistContext, where: Any) -> None:
    if found is None:
        return
    saved_world = int(found.state.get("world_size", 1))
    if saved_world != ctx.world_size:
        raise ValueError(
            f"the checkpoint in {where} was written by a run of {saved_world} "
            f"process(es) but this run has {ctx.world_size}; resume with the same "
            "number of processes (or use another checkpoint_dir)"
        )


def _sampler_seed(
    options: TrainOptions,
    found: LoadedCheckpoint | None,
    ctx: dist_utils.DistContext,
    device: torch.device,
) -> int:
    if found is not None and "sampler_seed" in found.state:
        return int(found.state["sampler_seed"])
    if options.seed is not None:
        return options.seed
    if not ctx.enabled:
        return 0  # unused: no DistributedSampler is created
    draw = int(torch.randint(2**31, ()).item()) if ctx.is_main else 0
    return dist_utils.broadcast_int(draw, ctx, device)


def _shard(
    name: str,
    ctx: dist_utils.DistContext,
    in_loader: Iterable[Any],
    outlier_loader: Iterable[Any] | None,
    seed: int,
) -> tuple[Iterable[Any], Iterable[Any] | None]:
    in_rank, msg = dist_utils.shard_in_loader(in_loader, ctx, seed)
    if msg:
        log_main(ctx, "%s: torch.distributed: %s", name, msg)
    if outlier_loader is None:
        return in_rank, None
    out_rank, msg = dist_utils.shard_outlier_loader(outlier_loader, ctx, seed)
    if msg:
        log_main(ctx, "%s: torch.distributed: %s", name, msg)
    return in_rank, out_rank


def plan_run(
    spec: RunSpec,
    in_loader: Iterable[Any],
    outlier_loader: Iterable[Any] | None,
    *,
    resume: bool,
) -> Plan:
    """Check everything and decide the run's setting, before any weight changes.

    Raises:
        TypeError, ValueError: From the pre-flight checks (see :meth:`Finetuner.fit`).
        CheckpointError: If ``resume`` finds checkpoints that cannot be used.
    """
    opts = spec.options
    device = opts.device if opts.device is not None else module_device(spec.model)
    assert isinstance(device, torch.device)
    ctx = dist_utils.context(device)
    device = dist_utils.resolve_device(device, ctx, explicit=opts.device is not None)
    pre = preflight(
        spec.model, spec.objective, opts, device, in_loader, outlier_loader, keys=spec.keys
    )
    pads = pad_values_of(spec.model)
    ckpt_dir = _checkpoint_dir(opts, resume)
    found = find_checkpoint(ckpt_dir, ctx, device) if resume and ckpt_dir is not None else None
    identity = identity_of(spec, pre.num_classes)
    _check_world(found, ctx, ckpt_dir)
    seed = _sampler_seed(opts, found, ctx, device)
    outliers = outlier_loader if pre.uses_outliers else None
    in_rank, out_rank = _shard(spec.name, ctx, in_loader, outliers, seed)
    steps = len(in_rank)  # type: ignore[arg-type]
    dist_utils.agree(steps, ctx, device, "the number of steps per epoch")
    if steps == 0:
        raise ValueError(
            "this rank's share of in_loader is empty; use more data or fewer processes"
        )
    return Plan(
        ctx, device, pre, pads, ckpt_dir, resume, found, identity, seed, in_rank, out_rank, steps
    )


@contextmanager
def synced_batchnorm(spec: RunSpec, ctx: dist_utils.DistContext) -> Iterator[None]:
    """Batch-norm layers synchronised across ranks for the block (``sync_batchnorm``)."""
    swap = dist_utils.SyncBatchNormSwap()
    if spec.options.sync_batchnorm and ctx.enabled:
        n_bn = swap.convert(spec.model)
        log_main(ctx, "%s: %d batch-norm layer(s) synchronised across ranks", spec.name, n_bn)
    try:
        yield
    finally:
        swap.revert()
