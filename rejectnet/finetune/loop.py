"""The one training loop shared by stage one, Outlier Exposure and rejectnet's stage two.

Every step draws a labeled in-distribution batch and (for the outlier objectives) an
outlier batch ``outlier_ratio`` times larger, runs ONE forward pass over their
concatenation so that batch-norm statistics see both, and hands the split logits to the
objective. Everything else (devices, mixed precision, seeding, checkpoints, resume,
progress, logging, callbacks, torch.distributed) lives here once.

Distributed training: when a process group is initialised (or ``torchrun``'s
environment variables are set, see :mod:`rejectnet.finetune.distributed`), the loop
trains the model through ``DistributedDataParallel`` (``self.model`` stays the unwrapped
module), gives each rank a disjoint share of the in-distribution data and of the
outliers, seeds every rank differently (``seed + rank``, so that dropout masks and the
random reject units of the pseudo-labels differ between ranks), all-reduces the epoch
statistics, and logs, shows progress and writes checkpoints on rank 0 only. Callbacks
run on every rank; a callback that raises :class:`StopTraining` must do so on every rank
at the same step.

On CUDA the step has no host synchronisation: batches are copied from pinned memory
with ``non_blocking=True``, and the check for a non-finite loss accumulates the first
bad step on the device and is read only at checkpoint and epoch boundaries (training
stops there with the exact step; the last good checkpoint is left intact). On a single
CPU process the loss is checked after every step, which costs nothing there.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from rejectnet._batches import split_batch
from rejectnet._inference import collect_logits, eval_mode, module_device
from rejectnet._outputs import extract_logits
from rejectnet.finetune import distributed as dist_utils
from rejectnet.finetune.checkpoint import check_writable, latest_checkpoint, write_checkpoint
from rejectnet.finetune.distributed import DistContext
from rejectnet.finetune.history import Callback, EpochStats, History, StopTraining
from rejectnet.finetune.objectives import Objective
from rejectnet.finetune.streams import EpochStream, OutlierStream

__all__ = ["AmpMode", "OptimizerFactory", "SchedulerFactory", "TrainingLoop"]

logger = logging.getLogger("rejectnet")

AmpMode = bool | Literal["bf16", "fp16"]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]

CHECKPOINT_FORMAT = 1
_NO_BAD_STEP = 2**62


def _check_positive_int(value: Any, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def _check_nonneg(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number >= 0, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def cosine_schedule(
    optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step cosine decay from the initial learning rate to 0 (the paper's schedule)."""

    def factor(step: int) -> float:
        return 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _numpy_state() -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "name": name,
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_numpy_state(s: dict[str, Any]) -> None:
    keys = s["keys"].numpy().astype(np.uint32)
    np.random.set_state((s["name"], keys, s["pos"], s["has_gauss"], s["cached"]))


class TrainingLoop:
    """The shared loop. Use the public trainers rather than this class directly.

    Attributes:
        model: The module being trained (never the ``DistributedDataParallel`` wrapper).
        history: Statistics of the epochs completed so far.
        step: Optimizer steps taken so far in the whole run.
        epoch: The current (0-based) epoch.
        rank: This process's rank (0 when not distributed).
        world_size: Number of training processes (1 when not distributed).
        generator: The RNG of the random reject units (seeded ``seed + rank``).
        train_loader: The in-distribution loader this rank iterates (re-created with a
            ``DistributedSampler`` under torch.distributed when needed).
    """

    def __init__(
        self,
        model: nn.Module,
        make_objective: Callable[[int, torch.Generator], Objective],
        *,
        name: str,
        epochs: int,
        lr: float,
        momentum: float,
        weight_decay: float,
        nesterov: bool,
        optimizer: OptimizerFactory | None,
        scheduler: SchedulerFactory | Literal["cosine"] | None,
        outlier_ratio: float,
        device: str | torch.device | None,
        amp: AmpMode,
        seed: int | None,
        grad_clip: float | None,
        checkpoint_dir: str | Path | None,
        checkpoint_every: int | None,
        progress: bool,
        callbacks: Sequence[Callback],
        sync_batchnorm: bool = False,
        channels_last: bool = False,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        _check_positive_int(epochs, "epochs")
        _check_positive_int(checkpoint_every, "checkpoint_every", allow_none=True)
        lr = _check_nonneg(lr, "lr")
        if lr == 0:
            raise ValueError("lr must be > 0")
        ratio = _check_nonneg(outlier_ratio, "outlier_ratio")
        if ratio == 0:
            raise ValueError(
                "outlier_ratio must be > 0 (the paper uses 5: outlier batches 5x larger)"
            )
        if grad_clip is not None and _check_nonneg(grad_clip, "grad_clip") == 0:
            raise ValueError("grad_clip must be > 0, or None to disable clipping")
        if amp not in (False, True, "bf16", "fp16"):
            raise ValueError(f"amp must be False, True, 'bf16' or 'fp16', got {amp!r}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        for flag, flag_name in (
            (sync_batchnorm, "sync_batchnorm"),
            (channels_last, "channels_last"),
        ):
            if not isinstance(flag, bool):
                raise TypeError(f"{flag_name} must be True or False, got {flag!r}")
        momentum = _check_nonneg(momentum, "momentum")
        weight_decay = _check_nonneg(weight_decay, "weight_decay")
        if optimizer is not None and not callable(optimizer):
            raise TypeError(
                "optimizer must be None (SGD) or a factory callable params -> Optimizer, e.g. "
                f"lambda p: torch.optim.AdamW(p, lr=1e-3); got {optimizer!r}"
            )
        if isinstance(scheduler, str) and scheduler != "cosine":
            raise ValueError(
                f"scheduler must be 'cosine', None, or a factory (optimizer, total_steps) -> "
                f"LRScheduler; got {scheduler!r}"
            )
        if scheduler is not None and not isinstance(scheduler, str) and not callable(scheduler):
            raise TypeError(f"scheduler must be 'cosine', None or a callable, got {scheduler!r}")
        if checkpoint_dir is not None and not isinstance(checkpoint_dir, (str, os.PathLike)):
            raise TypeError(
                "checkpoint_dir must be a str or path (a folder), or None; got "
                f"{type(checkpoint_dir).__name__}"
            )
        callbacks = list(callbacks)
        for cb in callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    "callbacks must be rejectnet.finetune.Callback instances (subclass it and "
                    f"override on_step_end/on_epoch_end); got {type(cb).__name__}"
                )
        if device is not None:
            try:
                device = torch.device(device)
            except (RuntimeError, TypeError) as err:
                raise ValueError(
                    f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:0'; got "
                    f"{device!r} ({err})"
                ) from None
        self.model = model
        self.make_objective = make_objective
        self.name = name
        self.epochs = epochs
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.nesterov = nesterov
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.outlier_ratio = ratio
        self._device_explicit = device is not None
        self.device = torch.device(device) if device is not None else module_device(model)
        self.amp = amp
        self.seed = seed
        self.grad_clip = grad_clip
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.callbacks = callbacks
        self.sync_batchnorm = sync_batchnorm
        self.channels_last = channels_last
        self.history = History()
        self.step = 0
        self.epoch = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.num_classes = 0
        self.generator: torch.Generator | None = None
        self.train_loader: Iterable[Any] | None = None
        self._ctx = DistContext()
        self._ddp: DistributedDataParallel | None = None
        self._sampler_seed = 0
        self._defer_nan_check = False
        self._first_bad: torch.Tensor | None = None
        self._steps_per_epoch = 1

    @property
    def rank(self) -> int:
        """This process's rank (0 when not distributed)."""
        return self._ctx.rank

    @property
    def world_size(self) -> int:
        """Number of training processes (1 when not distributed)."""
        return self._ctx.world_size

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes checkpoints (rank 0)."""
        return self._ctx.is_main

    # ------------------------------------------------------------------ helpers
    def _log(self, msg: str, *args: Any) -> None:
        if self._ctx.is_main:
            logger.info(msg, *args)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return extract_logits(self.model(x))

    def _train_forward(self, x: torch.Tensor) -> torch.Tensor:
        module: nn.Module = self._ddp if self._ddp is not None else self.model
        return extract_logits(module(x))

    def _autocast(self) -> Any:
        if self.amp is False:
            return nullcontext()
        dtype = torch.float16 if self.amp == "fp16" else torch.bfloat16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _expected_width(self) -> int:
        from rejectnet.head import RejectHead

        if isinstance(self.model, RejectHead):
            return self.model.num_classes + self.model.k
        return 0

    def _num_classes(self, width: int) -> int:
        from rejectnet.head import RejectHead

        return self.model.num_classes if isinstance(self.model, RejectHead) else width

    def _validate(self, in_loader: Iterable[Any], outlier_loader: Iterable[Any] | None) -> None:
        """Check the data and the model before any weight changes."""
        try:
            n_batches = len(in_loader)  # type: ignore[arg-type]
        except TypeError:
            raise TypeError(
                "in_loader must have a length (a DataLoader over a map-style dataset or a "
                "list of batches), so that epochs and the cosine schedule are defined"
            ) from None
        if n_batches == 0:
            raise ValueError("in_loader is empty; it needs at least one labeled batch")
        first = next(iter(in_loader), None)
        if first is None:
            raise ValueError("in_loader is empty; it needs at least one labeled batch")
        x_in, y = split_batch(first, "in_loader batch")
        if y is None:
            raise ValueError("in_loader batches must carry labels: (x, y) or {'x':..., 'y':...}")
        if y.dtype.is_floating_point or y.dtype == torch.bool or y.ndim != 1:
            raise ValueError(
                f"in_loader labels must be a 1-D integer tensor of class indices, got "
                f"dtype {y.dtype} and shape {tuple(y.shape)}"
            )
        if self.fp16_on_cpu():
            raise ValueError("amp='fp16' needs a CUDA device; on CPU use amp=True (bfloat16)")
        if outlier_loader is not None:
            first_out = next(iter(outlier_loader), None)
            if first_out is None:
                raise ValueError("outlier_loader is empty; it needs unlabeled outliers")
            x_out, _ = split_batch(first_out, "outlier_loader batch")
            if tuple(x_out.shape[1:]) != tuple(x_in.shape[1:]):
                raise ValueError(
                    f"in_loader inputs have shape {tuple(x_in.shape[1:])} per sample but "
                    f"outlier_loader inputs have {tuple(x_out.shape[1:])}; resize or crop the "
                    "outliers to the in-distribution input shape"
                )
            if x_out.dtype != x_in.dtype:
                raise ValueError(
                    f"in_loader inputs are {x_in.dtype} but outlier_loader inputs are "
                    f"{x_out.dtype}; apply the same transform to both"
                )
        if self.sync_batchnorm and self._ctx.enabled and self.device.type != "cuda":
            raise ValueError(
                "sync_batchnorm=True needs CUDA devices (torch's SyncBatchNorm does not run "
                f"on {self.device.type}); train on GPUs or pass sync_batchnorm=False"
            )
        self.model.to(self.device)
        with torch.no_grad(), eval_mode(self.model):
            logits = self._forward(x_in[:2].to(self.device))
        width = int(logits.shape[-1])
        expected = self._expected_width()
        if logits.ndim != 2 or (expected and width != expected):
            raise ValueError(
                f"the model returns logits of shape {tuple(logits.shape)}; expected (N, "
                f"{expected or 'C'})"
            )
        self.num_classes = self._num_classes(width)
        self._check_labels(y, "in_loader")
        dataset = getattr(in_loader, "dataset", None)
        tensors = getattr(dataset, "tensors", None)
        all_labels = tensors[1] if isinstance(tensors, tuple) and len(tensors) > 1 else None
        if all_labels is None:
            all_labels = getattr(dataset, "targets", None)
        if isinstance(all_labels, (torch.Tensor, list, np.ndarray)):
            self._check_labels(torch.as_tensor(all_labels), "in_loader dataset")

    def fp16_on_cpu(self) -> bool:
        return self.amp == "fp16" and self.device.type != "cuda"

    def _check_labels(self, y: torch.Tensor, where: str) -> None:
        if y.numel() == 0 or y.device.type != "cpu":
            return
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(
                f"{where} has labels in [{lo}, {hi}] but the model has C={self.num_classes} "
                f"classes; labels must be in [0, {self.num_classes - 1}]"
            )

    def _build_optimizer(self, total_steps: int) -> None:
        params = [p for p in self.model.parameters() if p.requires_grad]
        if self.optimizer_factory is not None:
            self.optimizer = self.optimizer_factory(params)
        else:
            self.optimizer = torch.optim.SGD(
                params,
                lr=self.lr,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
                nesterov=self.nesterov and self.momentum > 0,
            )
        if self.scheduler_factory == "cosine":
            self.scheduler = cosine_schedule(self.optimizer, total_steps)
        elif self.scheduler_factory is None:
            self.scheduler = None
        else:
            self.scheduler = self.scheduler_factory(self.optimizer, total_steps)

    def _rng_state(self, gen: torch.Generator) -> dict[str, Any]:
        state: dict[str, Any] = {
            "torch": torch.random.get_rng_state(),
            "numpy": _numpy_state(),
            "python": random.getstate(),
            "pseudo": gen.get_state(),
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def _set_rng_state(self, state: dict[str, Any], gen: torch.Generator) -> None:
        torch.random.set_rng_state(state["torch"])
        _set_numpy_state(state["numpy"])
        py = state["python"]
        random.setstate((py[0], tuple(py[1]), py[2]))
        gen.set_state(state["pseudo"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def _to_device(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """Move a batch's parts to the device and concatenate them there.

        On CUDA each CPU part is copied with ``non_blocking=True`` from pinned memory (a
        part a ``pin_memory=True`` loader already pinned is used as is, saving a host
        copy) and the concatenation runs on the GPU; elsewhere the parts are joined on
        the host and moved once.
        """
        if self.device.type == "cuda":
            moved = [
                (p if p.is_pinned() else p.pin_memory()).to(self.device, non_blocking=True)
                if p.device.type == "cpu"
                else p.to(self.device)
                for p in parts
            ]
            x = moved[0] if len(moved) == 1 else torch.cat(moved)
        else:
            x = (parts[0] if len(parts) == 1 else torch.cat(parts)).to(self.device)
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def _labels_to_device(self, y: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and y.device.type == "cpu":
            return y.pin_memory().to(self.device, non_blocking=True)
        return y.to(self.device)

    # ------------------------------------------------------------------ non-finite loss
    def _note_loss(self, loss: torch.Tensor) -> None:
        """Check the step's loss: at once on one CPU process, deferred (sync-free) otherwise."""
        finite = torch.isfinite(loss.detach())
        if self._defer_nan_check:
            assert self._first_bad is not None
            here = torch.where(finite, _NO_BAD_STEP, self.step + 1)
            torch.minimum(self._first_bad, here, out=self._first_bad)
        elif not bool(finite):
            raise FloatingPointError(
                f"{self.name}: the loss became {float(loss.detach())} at step "
                f"{self.step + 1} (epoch {self.epoch + 1}); training stopped. The last "
                "good checkpoint "
                "is intact; lower lr, enable grad_clip, or check the data for NaN/inf"
            )

    def _raise_if_nonfinite(self) -> None:
        """At a boundary: raise if any rank saw a non-finite loss since the start."""
        if not self._defer_nan_check or self._first_bad is None:
            return
        bad = dist_utils.all_reduce(self._first_bad.clone(), self._ctx, "min")
        first = int(bad)  # the one host sync, at checkpoint/epoch boundaries only
        if first >= _NO_BAD_STEP:
            return
        epoch = (first - 1) // self._steps_per_epoch + 1
        raise FloatingPointError(
            f"{self.name}: the loss became non-finite (NaN or inf) at step {first} (epoch "
            f"{epoch}); noticed at step {self.step}, where training stopped (the loss is "
            "checked without host synchronisation and read at checkpoint and epoch "
            "boundaries, so the weights in memory are no longer valid). The last good "
            "checkpoint is intact; lower lr, enable grad_clip, or check the data for NaN/inf"
        )

    # ------------------------------------------------------------------ distributed
    def _setup_distributed(self) -> None:
        self._ctx = dist_utils.context(self.device)
        self.device = dist_utils.resolve_device(
            self.device, self._ctx, explicit=self._device_explicit
        )
        self._defer_nan_check = self.device.type == "cuda" or self._ctx.enabled

    def _shard(
        self, in_loader: Iterable[Any], outlier_loader: Iterable[Any] | None, uses_outliers: bool
    ) -> tuple[Iterable[Any], Iterable[Any] | None]:
        in_rank, msg = dist_utils.shard_in_loader(in_loader, self._ctx, self._sampler_seed)
        if msg:
            self._log("%s: torch.distributed: %s", self.name, msg)
        out_rank = outlier_loader
        if outlier_loader is not None and uses_outliers:
            out_rank, msg = dist_utils.shard_outlier_loader(
                outlier_loader, self._ctx, self._sampler_seed
            )
            if msg:
                self._log("%s: torch.distributed: %s", self.name, msg)
        return in_rank, out_rank

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (batch-norm statistics), as DDP does before
        each forward, so that all ranks hold the same model between epochs."""
        if self._ctx.enabled:
            for buf in self.model.buffers():
                torch.distributed.broadcast(buf, src=0)

    def _wrap_ddp(self) -> None:
        if not self._ctx.enabled:
            self._ddp = None
            return
        ids = [self.device.index] if self.device.type == "cuda" else None
        self._ddp = DistributedDataParallel(self.model, device_ids=ids)

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        in_loader: Iterable[Any],
        outlier_loader: Iterable[Any] | None = None,
        val_loader: Iterable[Any] | None = None,
        *,
        resume: bool = False,
    ) -> History:
        """Train; see the public trainers for the arguments."""
        self._setup_distributed()
        self._validate(in_loader, outlier_loader)
        ctx = self._ctx
        if self.checkpoint_dir is not None:
            check_writable(self.checkpoint_dir)
        elif resume:
            raise ValueError("resume=True needs checkpoint_dir to be set")
        ckpt = None
        if resume and self.checkpoint_dir is not None:
            # rank 0 first: reading may move a corrupted file aside, which the others see
            if ctx.is_main:
                ckpt = latest_checkpoint(self.checkpoint_dir)
            dist_utils.barrier(ctx, self.device)
            if not ctx.is_main:
                ckpt = latest_checkpoint(self.checkpoint_dir)
        if resume:
            dist_utils.agree(
                -1 if ckpt is None else int(ckpt.get("step", -1)),
                ctx,
                self.device,
                "the checkpoint to resume from (checkpoint_dir must be on a filesystem "
                "every rank can read)",
            )
        if ckpt is not None:
            saved_world = int(ckpt.get("world_size", 1))
            if saved_world != ctx.world_size:
                raise ValueError(
                    f"the checkpoint in {self.checkpoint_dir} was written by a run of "
                    f"{saved_world} process(es) but this run has {ctx.world_size}; resume with "
                    f"the same number of processes (or use another checkpoint_dir)"
                )
        if ckpt is not None and "sampler_seed" in ckpt:
            self._sampler_seed = int(ckpt["sampler_seed"])
        elif self.seed is not None:
            self._sampler_seed = self.seed
        elif not ctx.enabled:
            self._sampler_seed = 0  # unused: no DistributedSampler is created
        else:
            draw = int(torch.randint(2**31, ()).item()) if ctx.is_main else 0
            self._sampler_seed = dist_utils.broadcast_int(draw, ctx, self.device)

        if self.seed is not None:
            rank_seed = self.seed + ctx.rank
            torch.manual_seed(rank_seed)
            np.random.seed(rank_seed % 2**32)
            random.seed(rank_seed)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(
            self.seed + ctx.rank
            if self.seed is not None
            else int(torch.randint(2**62, ()).item()) + ctx.rank
        )
        self.generator = gen
        objective = self.make_objective(self.num_classes, gen)
        if objective.uses_outliers and outlier_loader is None:
            raise ValueError("outlier_loader is required for this objective")
        in_rank, out_rank = self._shard(in_loader, outlier_loader, objective.uses_outliers)
        self.train_loader = in_rank
        steps_per_epoch = len(in_rank)  # type: ignore[arg-type]
        dist_utils.agree(steps_per_epoch, ctx, self.device, "the number of steps per epoch")
        if steps_per_epoch == 0:
            raise ValueError(
                "this rank's share of in_loader is empty; use more data or fewer processes"
            )
        self._steps_per_epoch = steps_per_epoch
        total = steps_per_epoch * self.epochs

        swap = dist_utils.SyncBatchNormSwap()
        if self.sync_batchnorm and ctx.enabled:
            n_bn = swap.convert(self.model)
            self._log("%s: %d batch-norm layer(s) synchronised across ranks", self.name, n_bn)
        try:
            if self.channels_last:
                self.model.to(memory_format=torch.channels_last)
            self._build_optimizer(total)
            assert self.optimizer is not None
            scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
            in_stream = EpochStream(in_rank)
            out_stream = None
            if objective.uses_outliers and out_rank is not None:
                out_stream = OutlierStream(out_rank)

            self.history = History()
            self.step, self.epoch = 0, 0
            self._first_bad = torch.full((), _NO_BAD_STEP, dtype=torch.int64, device=self.device)
            skip, epoch_rng, acc = 0, None, None
            if ckpt is not None:
                skip, epoch_rng, acc = self._restore(ckpt, out_stream, scaler, gen)
            elif resume:
                self._log(
                    "resume=True but no checkpoint in %s; starting from scratch",
                    self.checkpoint_dir,
                )
            self._wrap_ddp()

            self._log(
                "%s: %d epochs x %d steps, in batch %s%s, outlier batch ratio %.2fx, "
                "device %s, amp %s",
                self.name,
                self.epochs,
                steps_per_epoch,
                getattr(in_rank, "batch_size", "?"),
                f" per rank x {ctx.world_size} ranks" if ctx.enabled else "",
                self.outlier_ratio if out_stream else 0.0,
                self.device,
                self.amp,
            )
            for cb in self.callbacks:
                cb.on_fit_start(self)
            (self._ddp if self._ddp is not None else self.model).train()
            try:
                while self.epoch < self.epochs:
                    self._run_epoch(
                        in_stream,
                        out_stream,
                        objective,
                        scaler,
                        gen,
                        val_loader,
                        steps_per_epoch,
                        skip,
                        epoch_rng,
                        acc,
                    )
                    skip, epoch_rng, acc = 0, None, None
            except StopTraining:
                self._sync_buffers()
                self._log("%s: stopped by a callback at step %d", self.name, self.step)
        finally:
            self._ddp = None
            swap.revert()
        return self.history

    def _new_acc(self) -> dict[str, torch.Tensor]:
        keys = ("loss", "in_loss", "out_loss", "correct", "n_in", "on_reject", "n_out", "steps")
        return {k: torch.zeros((), dtype=torch.float64, device=self.device) for k in keys}

    def _reduced(self, acc: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The accumulators summed over the ranks (``steps`` stays this rank's count)."""
        if not self._ctx.enabled:
            return acc
        keys = list(acc)
        flat = dist_utils.all_reduce(torch.stack([acc[k] for k in keys]), self._ctx)
        out = dict(zip(keys, flat.unbind(0), strict=True))
        out["steps"] = acc["steps"]
        return out

    def _run_epoch(
        self,
        in_stream: EpochStream,
        out_stream: OutlierStream | None,
        objective: Objective,
        scaler: torch.amp.GradScaler | None,
        gen: torch.Generator,
        val_loader: Iterable[Any] | None,
        steps_per_epoch: int,
        skip: int,
        epoch_rng: torch.Tensor | None,
        acc: dict[str, torch.Tensor] | None,
    ) -> None:
        assert self.optimizer is not None
        t0 = time.perf_counter()
        acc = acc if acc is not None else self._new_acc()
        in_stream.start(skip=skip, start_rng=epoch_rng, epoch=self.epoch)
        bar = tqdm(
            total=steps_per_epoch,
            initial=skip,
            disable=not (self.progress and self._ctx.is_main),
            leave=False,
            desc=f"{self.name} {self.epoch + 1}/{self.epochs}",
            dynamic_ncols=True,
        )
        params = self.model.parameters
        try:
            for batch in in_stream:
                x_in, y = split_batch(batch, "in_loader batch")
                if y is None:
                    raise ValueError("in_loader batches must carry labels")
                self._check_labels(y, f"in_loader batch at step {self.step + 1}")
                n_in = int(x_in.shape[0])
                parts = [x_in]
                n_out = 0
                if out_stream is not None:
                    x_out = out_stream.take(max(1, round(self.outlier_ratio * n_in)))
                    if tuple(x_out.shape[1:]) != tuple(x_in.shape[1:]):
                        raise ValueError(
                            f"outlier_loader inputs have shape {tuple(x_out.shape[1:])} but "
                            f"in_loader inputs have {tuple(x_in.shape[1:])} (step {self.step + 1})"
                        )
                    n_out = int(x_out.shape[0])
                    parts.append(x_out.to(x_in.dtype))
                x = self._to_device(parts)
                y = self._labels_to_device(y)
                with self._autocast():
                    logits = self._train_forward(x)
                    out = objective(logits[:n_in], y, logits[n_in:] if n_out else None)
                self._note_loss(out.loss)
                self.optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(out.loss).backward()
                    if self.grad_clip is not None:
                        scaler.unscale_(self.optimizer)
                        nn.utils.clip_grad_norm_(params(), self.grad_clip)
                    scaler.step(self.optimizer)
                    scaler.update()
                else:
                    out.loss.backward()
                    if self.grad_clip is not None:
                        nn.utils.clip_grad_norm_(params(), self.grad_clip)
                    self.optimizer.step()
                if self.scheduler is not None:
                    self.scheduler.step()
                self.step += 1
                acc["loss"] += out.loss.detach() * n_in
                acc["in_loss"] += out.in_loss * n_in
                acc["correct"] += out.in_correct
                acc["n_in"] += n_in
                acc["steps"] += 1
                if out.out_loss is not None:
                    acc["out_loss"] += out.out_loss * n_out
                    acc["n_out"] += n_out
                if out.out_on_reject is not None:
                    acc["on_reject"] += out.out_on_reject
                bar.update(1)
                for cb in self.callbacks:
                    cb.on_step_end(self, self.step)
                if (
                    self.checkpoint_every is not None
                    and self.step % self.checkpoint_every == 0
                    and in_stream.position < steps_per_epoch
                ):
                    self._save(in_stream, out_stream, scaler, gen, acc)
        except StopTraining:
            self._save(in_stream, out_stream, scaler, gen, acc)
            raise
        finally:
            bar.close()
        self._sync_buffers()
        self._raise_if_nonfinite()
        stats = self._epoch_stats(self._reduced(acc), val_loader, time.perf_counter() - t0)
        self.history.epochs.append(stats)
        self.epoch += 1
        self._log(
            "%s epoch %d/%d: loss %.4f in-acc %.2f%%%s%s",
            self.name,
            stats.epoch,
            self.epochs,
            stats.loss,
            100 * stats.in_accuracy,
            ""
            if stats.out_on_reject is None
            else f" outliers-on-reject {100 * stats.out_on_reject:.1f}%",
            "" if stats.val_accuracy is None else f" val-acc {100 * stats.val_accuracy:.2f}%",
        )
        self._save(in_stream, out_stream, scaler, gen, None)
        for cb in self.callbacks:
            cb.on_epoch_end(self, stats)

    def _epoch_stats(
        self, acc: dict[str, torch.Tensor], val_loader: Iterable[Any] | None, seconds: float
    ) -> EpochStats:
        vals = {k: float(v) for k, v in acc.items()}
        n_in = max(vals["n_in"], 1.0)
        has_out = vals["n_out"] > 0
        val_acc = self.evaluate_accuracy(val_loader) if val_loader is not None else None
        lr = float(self.optimizer.param_groups[0]["lr"]) if self.optimizer else self.lr
        return EpochStats(
            epoch=self.epoch + 1,
            steps=int(vals["steps"]),
            loss=vals["loss"] / n_in,
            in_loss=vals["in_loss"] / n_in,
            out_loss=vals["out_loss"] / vals["n_out"] if has_out else None,
            in_accuracy=vals["correct"] / n_in,
            out_on_reject=vals["on_reject"] / vals["n_out"]
            if has_out and self._expected_width()
            else None,
            val_accuracy=val_acc,
            lr=lr,
            seconds=seconds,
        )

    def evaluate_accuracy(self, loader: Iterable[Any]) -> float:
        """Accuracy over the C classes on a labeled loader, in eval mode.

        Under torch.distributed every rank evaluates the whole loader (the weights are
        the same on every rank, so the result is too).
        """
        with eval_mode(self.model):
            logits, y = collect_logits(self._forward, loader, self.device, name="val_loader")
        if y is None:
            raise ValueError("val_loader batches must carry labels")
        return float((logits[:, : self.num_classes].argmax(1) == y).double().mean())

    # ------------------------------------------------------------------ checkpoints
    def _save(
        self,
        in_stream: EpochStream,
        out_stream: OutlierStream | None,
        scaler: torch.amp.GradScaler | None,
        gen: torch.Generator,
        acc: dict[str, torch.Tensor] | None,
    ) -> None:
        if self.checkpoint_dir is None:
            return
        self._raise_if_nonfinite()
        assert self.optimizer is not None
        mid_epoch = acc is not None
        # What differs between the ranks; under torch.distributed rank 0 gathers it all.
        own: dict[str, Any] = {
            "epoch_rng": in_stream.start_rng if mid_epoch else None,
            "acc": {k: v.cpu() for k, v in acc.items()} if acc is not None else None,
            "rng": self._rng_state(gen),
            "outliers": out_stream.state_dict() if out_stream is not None else None,
        }
        ranks = dist_utils.gather_to_main(own, self._ctx) if self._ctx.enabled else None
        if self._ctx.is_main:
            state = {
                "format": CHECKPOINT_FORMAT,
                "name": self.name,
                "epochs": self.epochs,
                "epoch": self.epoch,
                "step": self.step,
                "batch_in_epoch": in_stream.position if mid_epoch else 0,
                **own,
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "history": [vars(e).copy() for e in self.history.epochs],
                "world_size": self._ctx.world_size,
                "sampler_seed": self._sampler_seed,
            }
            if ranks is not None:
                state["rank_states"] = ranks
            write_checkpoint(self.checkpoint_dir, state)
        dist_utils.barrier(self._ctx, self.device)

    def _restore(
        self,
        ckpt: dict[str, Any],
        out_stream: OutlierStream | None,
        scaler: torch.amp.GradScaler | None,
        gen: torch.Generator,
    ) -> tuple[int, torch.Tensor | None, dict[str, torch.Tensor] | None]:
        assert self.optimizer is not None
        if ckpt.get("name") != self.name or ckpt.get("epochs") != self.epochs:
            raise ValueError(
                f"the checkpoint in {self.checkpoint_dir} is from a different run "
                f"({ckpt.get('name')}, {ckpt.get('epochs')} epochs) than this one "
                f"({self.name}, {self.epochs} epochs); use another checkpoint_dir or resume=False"
            )
        own = ckpt["rank_states"][self._ctx.rank] if "rank_states" in ckpt else ckpt
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt["scaler"] is not None:
            scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.history = History([EpochStats(**e) for e in ckpt["history"]])
        if out_stream is not None and own["outliers"] is not None:
            out_stream.load_state_dict(own["outliers"])
        self._set_rng_state(own["rng"], gen)
        acc = own["acc"]
        if acc is not None:
            acc = {k: v.to(self.device) for k, v in acc.items()}
        self._log("%s: resumed at epoch %d, step %d", self.name, self.epoch + 1, self.step)
        return int(ckpt["batch_in_epoch"]), own["epoch_rng"], acc
