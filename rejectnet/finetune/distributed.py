"""torch.distributed support for the training loop (DistributedDataParallel).

The trainers detect a process group with ``dist.is_available() and dist.is_initialized()``.
When none exists but the process was started by ``torchrun`` (``WORLD_SIZE > 1`` in the
environment), the loop initialises one from the environment variables itself: ``nccl``
when training on CUDA, ``gloo`` otherwise. A world of one process is trained exactly
like a plain single-process run.

How the data are split between the ranks:

* **In-distribution data.** A ``DataLoader`` that already has a ``DistributedSampler`` is
  used as it is (``set_epoch(epoch)`` is called every epoch). A ``DataLoader`` with the
  default sampler (``shuffle=True`` or ``False``) is re-created with a
  ``DistributedSampler(shuffle=..., seed=run seed)`` and the same batch size, collate
  function, workers and other options, so each rank reads a disjoint 1/world_size of
  the data per epoch in ``loader.batch_size`` batches (the global batch is world_size
  times larger). A list or other sized iterable of batches is split batch-wise: rank r
  takes batches r, r + world_size, ..., the same number on every rank. Other samplers
  (weighted, custom batch samplers) cannot be split without changing what they sample;
  they raise a ``ValueError`` asking for a ``DistributedSampler``.
* **Outliers.** A ``DataLoader`` with the default sampler is re-created with its own
  ``DistributedSampler`` (``set_epoch(pass)`` at every pass over the outliers), so the
  ranks' outlier streams are disjoint. Anything else is split row-wise: rank r keeps
  rows r, r + world_size, ... of every batch (disjoint when all ranks see the same
  batch order, e.g. a list or an unshuffled loader).

Because a ``DistributedSampler``'s order is a pure function of (seed, epoch), resuming
needs no extra in-data state; what does differ per rank (RNG states, the outlier stream
position, the epoch's accumulators) is gathered into the checkpoint by rank 0.
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler

from rejectnet._batches import Inputs, split_inputs, take_rows

__all__ = [
    "BatchShard",
    "DistContext",
    "RowShard",
    "SyncBatchNormSwap",
    "agree",
    "all_reduce",
    "barrier",
    "broadcast_int",
    "context",
    "gather_to_main",
    "resolve_device",
    "set_epoch",
    "shard_in_loader",
    "shard_outlier_loader",
]

logger = logging.getLogger("rejectnet")

OUTLIER_SEED_OFFSET = 1_000_003
"""Added to the run seed for the outliers' ``DistributedSampler`` (independent orders)."""


@dataclass(frozen=True)
class DistContext:
    """This process's place in the process group.

    Attributes:
        rank: Global rank (0 when not distributed).
        world_size: Number of processes (1 when not distributed).
        local_rank: Rank on this machine (``LOCAL_RANK``), used to pick the CUDA device.
        backend: The process group's backend, ``""`` when not distributed.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        """Whether more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0 (the one that logs and writes checkpoints)."""
        return self.rank == 0


def _destroy() -> None:  # pragma: no cover - runs at interpreter exit
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def context(device: torch.device) -> DistContext:
    """Detect the process group, initialising it from ``torchrun``'s variables if needed.

    Args:
        device: The training device; picks the backend (``nccl`` for CUDA, else ``gloo``)
            when the group is created here.

    Returns:
        The rank and world size (rank 0 of 1 when not distributed).
    """
    if not dist.is_available():
        return DistContext()
    if not dist.is_initialized():
        world = int(os.environ.get("WORLD_SIZE", "1") or 1)
        if world <= 1 or "MASTER_ADDR" not in os.environ:
            return DistContext()
        if "RANK" not in os.environ:
            # WORLD_SIZE without RANK: not a torchrun worker (e.g. the main process of a
            # launcher such as Lightning's before it spawns its workers): train alone
            logger.info(
                "torch.distributed: WORLD_SIZE=%d is set but RANK is not; training in this "
                "process alone",
                world,
            )
            return DistContext()
        local_rank = int(os.environ.get("LOCAL_RANK", "0") or 0)
        backend = "gloo"
        if device.type == "cuda" and dist.is_nccl_available():
            backend = "nccl"
            torch.cuda.set_device(device.index if device.index is not None else local_rank)
        dist.init_process_group(backend=backend)
        atexit.register(_destroy)
        if dist.get_rank() == 0:
            logger.info(
                "torch.distributed: initialised a %s process group of %d ranks from the "
                "environment (torchrun)",
                backend,
                world,
            )
    world = dist.get_world_size()
    rank = dist.get_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)) or rank)
    return DistContext(rank, world, local_rank, str(dist.get_backend()))


def resolve_device(
    device: torch.device, ctx: DistContext, *, explicit: bool = True
) -> torch.device:
    """Give each rank its own GPU: ``"cuda"`` without an index becomes ``cuda:LOCAL_RANK``.

    Args:
        device: The device asked for, or the one the model's parameters are on.
        ctx: The distributed context.
        explicit: Whether the caller passed ``device=``. When it did not, a CUDA device
            inferred from the model (typically ``cuda:0`` after ``model.cuda()`` on every
            rank) is replaced by ``cuda:LOCAL_RANK`` so ranks do not share one GPU.

    Returns:
        The device this rank trains on.

    Raises:
        ValueError: If the backend is ``nccl`` but the device is not CUDA.
    """
    if not ctx.enabled:
        return device
    if device.type == "cuda":
        if device.index is None or not explicit:
            count = max(torch.cuda.device_count(), 1)
            device = torch.device("cuda", ctx.local_rank % count)
        torch.cuda.set_device(device)
    elif ctx.backend == "nccl":
        raise ValueError(
            f"the process group uses the nccl backend, which needs CUDA tensors, but the "
            f"model trains on {device}; move the model to cuda:LOCAL_RANK (or pass "
            "device='cuda'), or initialise the process group with backend='gloo'"
        )
    return device


# ---------------------------------------------------------------------- collectives
def all_reduce(t: torch.Tensor, ctx: DistContext, op: str = "sum") -> torch.Tensor:
    """All-reduce a tensor in place across the ranks (``"sum"``, ``"min"`` or ``"max"``)."""
    if ctx.enabled:
        ops = {"sum": dist.ReduceOp.SUM, "min": dist.ReduceOp.MIN, "max": dist.ReduceOp.MAX}
        dist.all_reduce(t, op=ops[op])
    return t


def agree(value: int, ctx: DistContext, device: torch.device, what: str) -> None:
    """Check that every rank has the same integer ``value``.

    Raises:
        RuntimeError: If the ranks disagree (rather than hanging in a later collective).
    """
    if not ctx.enabled:
        return
    t = torch.tensor([value, -value], dtype=torch.int64, device=device)
    all_reduce(t, ctx, "max")
    hi, lo = int(t[0]), -int(t[1])
    if hi != lo:
        raise RuntimeError(f"the ranks disagree on {what}: values range from {lo} to {hi}")


def broadcast_int(value: int, ctx: DistContext, device: torch.device) -> int:
    """Rank 0's ``value``, on every rank."""
    if not ctx.enabled:
        return value
    t = torch.tensor([value], dtype=torch.int64, device=device)
    dist.broadcast(t, src=0)
    return int(t[0])


def barrier(ctx: DistContext, device: torch.device) -> None:
    """Wait for every rank (a tiny all-reduce, so it works with any backend)."""
    if ctx.enabled:
        all_reduce(torch.zeros(1, device=device), ctx)


def gather_to_main(obj: Any, ctx: DistContext) -> list[Any] | None:
    """Gather one picklable object per rank onto rank 0 (``None`` on the other ranks)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] | None = [None] * ctx.world_size if ctx.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


# ---------------------------------------------------------------------- data sharding
def _default_shuffle(loader: DataLoader[Any]) -> bool | None:
    """``shuffle`` of a plain DataLoader that uses a default sampler, else ``None``."""
    if type(loader) is not DataLoader or loader.batch_size is None:
        return None
    sampler = loader.sampler
    if type(sampler) is SequentialSampler:
        return False
    # RandomSampler has no public accessor for an explicit num_samples
    if (
        type(sampler) is RandomSampler
        and not sampler.replacement
        and getattr(sampler, "_num_samples", None) is None
    ):
        return True
    return None


def _recreate(loader: DataLoader[Any], sampler: DistributedSampler[Any]) -> DataLoader[Any]:
    kwargs: dict[str, Any] = dict(
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        persistent_workers=loader.persistent_workers,
    )
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    if getattr(loader, "pin_memory_device", ""):
        kwargs["pin_memory_device"] = loader.pin_memory_device
    if hasattr(loader, "in_order"):
        kwargs["in_order"] = loader.in_order
    return DataLoader(loader.dataset, **kwargs)


def _has_distributed_sampler(loader: Any) -> bool:
    return isinstance(getattr(loader, "sampler", None), DistributedSampler) or isinstance(
        getattr(getattr(loader, "batch_sampler", None), "sampler", None), DistributedSampler
    )


class BatchShard:
    """Rank r's share of a sized iterable of batches: batches r, r + W, r + 2W, ...

    Every rank gets ``len(loader) // W`` batches (the remainder is dropped), so all
    ranks take the same number of steps.
    """

    def __init__(self, loader: Iterable[Any], rank: int, world_size: int) -> None:
        self.loader = loader
        self.rank = rank
        self.world_size = world_size
        self.length = len(loader) // world_size  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[Any]:
        taken = 0
        if self.length == 0:
            return
        for i, batch in enumerate(self.loader):
            if i % self.world_size == self.rank:
                yield batch
                taken += 1
                if taken == self.length:
                    return


class RowShard:
    """Rank r's share of every outlier batch: rows r, r + W, r + 2W, ... (labels dropped)."""

    def __init__(self, loader: Iterable[Any], rank: int, world_size: int) -> None:
        self.loader = loader
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[Inputs]:
        for batch in self.loader:
            x, _ = split_inputs(batch, "outlier_loader batch", labels=False)
            yield take_rows(x, slice(self.rank, None, self.world_size))


def _rank_sampler(
    loader: DataLoader[Any], ctx: DistContext, shuffle: bool, seed: int
) -> DistributedSampler[Any]:
    """This rank's ``DistributedSampler`` over the loader's dataset."""
    return DistributedSampler(
        loader.dataset,  # type: ignore[arg-type]
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=shuffle,
        seed=seed,
    )


def shard_in_loader(
    loader: Iterable[Any], ctx: DistContext, seed: int
) -> tuple[Iterable[Any], str]:
    """This rank's in-distribution loader (see the module docstring for the rules).

    Returns:
        The loader to iterate and a sentence for the log (``""`` when unchanged).

    Raises:
        ValueError: For a DataLoader whose sampler cannot be split, or too few batches.
    """
    if not ctx.enabled:
        return loader, ""
    if _has_distributed_sampler(loader):
        return loader, "in_loader already has a DistributedSampler; used as given"
    if isinstance(loader, DataLoader):
        shuffle = _default_shuffle(loader)
        if shuffle is None:
            raise ValueError(
                f"in_loader is a {type(loader).__name__} with a "
                f"{type(loader.sampler).__name__}"
                f"{'' if loader.batch_size is not None else ' and a custom batch_sampler'}; "
                "under torch.distributed rejectnet can only re-create loaders that use the "
                "default sampler (shuffle=True/False). Give it a "
                "torch.utils.data.DistributedSampler yourself"
            )
        sampler = _rank_sampler(loader, ctx, shuffle, seed)
        return _recreate(loader, sampler), (
            f"in_loader re-created with a DistributedSampler(shuffle={shuffle}, seed={seed}) "
            f"over {ctx.world_size} ranks: {loader.batch_size} samples per rank and step, "
            f"{len(sampler)} per rank and epoch"
        )
    n = len(loader)  # type: ignore[arg-type]
    if n < ctx.world_size:
        raise ValueError(
            f"in_loader has {n} batches but {ctx.world_size} ranks train; each rank needs "
            "at least one batch"
        )
    dropped = n % ctx.world_size
    return BatchShard(loader, ctx.rank, ctx.world_size), (
        f"in_loader is not a DataLoader; rank r takes batches r, r+{ctx.world_size}, ... "
        f"({n // ctx.world_size} per rank and epoch"
        f"{f', the last {dropped} dropped' if dropped else ''})"
    )


def shard_outlier_loader(
    loader: Iterable[Any], ctx: DistContext, seed: int
) -> tuple[Iterable[Any], str]:
    """This rank's outlier loader (see the module docstring for the rules).

    Returns:
        The loader to iterate and a sentence for the log (``""`` when unchanged).
    """
    if not ctx.enabled:
        return loader, ""
    if _has_distributed_sampler(loader):
        return loader, "outlier_loader already has a DistributedSampler; used as given"
    if isinstance(loader, DataLoader):
        shuffle = _default_shuffle(loader)
        if shuffle is not None:
            sampler = _rank_sampler(loader, ctx, shuffle, seed + OUTLIER_SEED_OFFSET)
            return _recreate(loader, sampler), (
                f"outlier_loader re-created with a DistributedSampler(shuffle={shuffle}): "
                f"disjoint outliers per rank, {len(sampler)} per rank and pass"
            )
    return RowShard(loader, ctx.rank, ctx.world_size), (
        f"outlier_loader split row-wise: rank r keeps rows r, r+{ctx.world_size}, ... of "
        "every batch (disjoint when all ranks read the batches in the same order)"
    )


def set_epoch(loader: Any, epoch: int) -> None:
    """Call ``set_epoch`` on the loader's (batch) sampler when it has one."""
    for holder in (loader, getattr(loader, "batch_sampler", None)):
        sampler = getattr(holder, "sampler", None)
        fn = getattr(sampler, "set_epoch", None)
        if callable(fn):
            fn(epoch)
            return


# ---------------------------------------------------------------------- SyncBatchNorm
class SyncBatchNormSwap:
    """Swap a model's batch-norm layers for ``SyncBatchNorm`` and back.

    The ``SyncBatchNorm`` layers share the original layers' parameters and buffers, so
    the optimizer and checkpoints see the same tensors; :meth:`revert` puts the original
    layer classes back (with the trained tensors) when training ends.
    """

    def __init__(self) -> None:
        self._swapped: list[tuple[nn.Module, str, nn.Module, nn.Module]] = []

    def convert(self, model: nn.Module) -> int:
        """Replace every ``BatchNorm*d`` below ``model`` in place; return how many."""
        targets = [
            (name, m)
            for name, m in model.named_modules()
            if name
            and isinstance(m, nn.modules.batchnorm._BatchNorm)
            and not isinstance(m, nn.SyncBatchNorm)
        ]
        for name, bn in targets:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            sync = nn.SyncBatchNorm.convert_sync_batchnorm(bn)
            setattr(parent, attr, sync)
            self._swapped.append((parent, attr, bn, sync))
        return len(targets)

    def revert(self) -> None:
        """Put the original layers back, holding the (possibly moved) trained tensors."""
        for parent, attr, bn, sync in reversed(self._swapped):
            with torch.no_grad():
                if sync.weight is not None:
                    bn.weight = sync.weight
                    bn.bias = sync.bias
            for key in ("running_mean", "running_var", "num_batches_tracked"):
                setattr(bn, key, getattr(sync, key))
            bn.train(sync.training)
            setattr(parent, attr, bn)
        self._swapped.clear()
