"""The one training loop shared by stage one, Outlier Exposure and rejectnet's stage two.

Every step draws a labeled in-distribution batch and (for the outlier objectives) an
outlier batch ``outlier_ratio`` times larger, runs ONE forward pass over their
concatenation so that batch-norm statistics see both, and hands the split logits to the
objective. Everything else (devices, mixed precision, seeding, checkpoints, resume,
progress, logging, callbacks) lives here once.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from rejectnet._batches import split_batch
from rejectnet._inference import collect_logits, eval_mode, module_device
from rejectnet._outputs import extract_logits
from rejectnet.finetune.checkpoint import check_writable, latest_checkpoint, write_checkpoint
from rejectnet.finetune.history import Callback, EpochStats, History, StopTraining
from rejectnet.finetune.objectives import Objective
from rejectnet.finetune.streams import EpochStream, OutlierStream

__all__ = ["AmpMode", "OptimizerFactory", "SchedulerFactory", "TrainingLoop"]

logger = logging.getLogger("rejectnet")

AmpMode = bool | Literal["bf16", "fp16"]
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]

CHECKPOINT_FORMAT = 1


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
        model: The module being trained.
        history: Statistics of the epochs completed so far.
        step: Optimizer steps taken so far in the whole run.
        epoch: The current (0-based) epoch.
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
        self.device = torch.device(device) if device is not None else module_device(model)
        self.amp = amp
        self.seed = seed
        self.grad_clip = grad_clip
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.checkpoint_every = checkpoint_every
        self.progress = progress
        self.callbacks = list(callbacks)
        self.history = History()
        self.step = 0
        self.epoch = 0
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        self.num_classes = 0

    # ------------------------------------------------------------------ helpers
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return extract_logits(self.model(x))

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
        self._validate(in_loader, outlier_loader)
        if self.checkpoint_dir is not None:
            check_writable(self.checkpoint_dir)
        elif resume:
            raise ValueError("resume=True needs checkpoint_dir to be set")
        steps_per_epoch = len(in_loader)  # type: ignore[arg-type]
        total = steps_per_epoch * self.epochs
        if self.seed is not None:
            torch.manual_seed(self.seed)
            np.random.seed(self.seed % 2**32)
            random.seed(self.seed)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(
            self.seed if self.seed is not None else int(torch.randint(2**62, ()).item())
        )
        objective = self.make_objective(self.num_classes, gen)
        self._build_optimizer(total)
        assert self.optimizer is not None
        scaler = torch.amp.GradScaler("cuda") if self.amp == "fp16" else None
        in_stream = EpochStream(in_loader)
        out_stream = None
        if objective.uses_outliers:
            if outlier_loader is None:
                raise ValueError("outlier_loader is required for this objective")
            out_stream = OutlierStream(outlier_loader)

        self.history = History()
        self.step, self.epoch = 0, 0
        skip, epoch_rng, acc = 0, None, None
        ckpt = latest_checkpoint(self.checkpoint_dir) if resume and self.checkpoint_dir else None
        if ckpt is not None:
            skip, epoch_rng, acc = self._restore(ckpt, steps_per_epoch, out_stream, scaler, gen)
        elif resume:
            logger.info(
                "resume=True but no checkpoint in %s; starting from scratch", self.checkpoint_dir
            )

        logger.info(
            "%s: %d epochs x %d steps, in batch %s, outlier batch ratio %.2fx, device %s, amp %s",
            self.name,
            self.epochs,
            steps_per_epoch,
            getattr(in_loader, "batch_size", "?"),
            self.outlier_ratio if out_stream else 0.0,
            self.device,
            self.amp,
        )
        for cb in self.callbacks:
            cb.on_fit_start(self)
        self.model.train()
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
            logger.info("%s: stopped by a callback at step %d", self.name, self.step)
        return self.history

    def _new_acc(self) -> dict[str, torch.Tensor]:
        keys = ("loss", "in_loss", "out_loss", "correct", "n_in", "on_reject", "n_out", "steps")
        return {k: torch.zeros((), dtype=torch.float64, device=self.device) for k in keys}

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
        in_stream.start(skip=skip, start_rng=epoch_rng)
        bar = tqdm(
            total=steps_per_epoch,
            initial=skip,
            disable=not self.progress,
            leave=False,
            desc=f"{self.name} {self.epoch + 1}/{self.epochs}",
            dynamic_ncols=True,
        )
        non_blocking = self.device.type == "cuda"
        try:
            for batch in in_stream:
                x_in, y = split_batch(batch, "in_loader batch")
                if y is None:
                    raise ValueError("in_loader batches must carry labels")
                self._check_labels(y, f"in_loader batch at step {self.step + 1}")
                n_in = int(x_in.shape[0])
                x = x_in
                n_out = 0
                if out_stream is not None:
                    x_out = out_stream.take(max(1, round(self.outlier_ratio * n_in)))
                    if tuple(x_out.shape[1:]) != tuple(x_in.shape[1:]):
                        raise ValueError(
                            f"outlier_loader inputs have shape {tuple(x_out.shape[1:])} but "
                            f"in_loader inputs have {tuple(x_in.shape[1:])} (step {self.step + 1})"
                        )
                    n_out = int(x_out.shape[0])
                    x = torch.cat([x_in, x_out.to(x_in.dtype)])
                x = x.to(self.device, non_blocking=non_blocking)
                y = y.to(self.device, non_blocking=non_blocking)
                with self._autocast():
                    logits = self._forward(x)
                    out = objective(logits[:n_in], y, logits[n_in:] if n_out else None)
                if not bool(torch.isfinite(out.loss)):
                    raise FloatingPointError(
                        f"{self.name}: the loss became {float(out.loss.detach())} at step "
                        f"{self.step + 1} (epoch {self.epoch + 1}); training stopped. The last "
                        "good checkpoint "
                        "is intact; lower lr, enable grad_clip, or check the data for NaN/inf"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                if scaler is not None:
                    scaler.scale(out.loss).backward()
                    if self.grad_clip is not None:
                        scaler.unscale_(self.optimizer)
                        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
                    scaler.step(self.optimizer)
                    scaler.update()
                else:
                    out.loss.backward()
                    if self.grad_clip is not None:
                        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
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
        stats = self._epoch_stats(acc, val_loader, time.perf_counter() - t0)
        self.history.epochs.append(stats)
        self.epoch += 1
        logger.info(
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
        """Accuracy over the C classes on a labeled loader, in eval mode."""
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
        assert self.optimizer is not None
        mid_epoch = acc is not None
        state = {
            "format": CHECKPOINT_FORMAT,
            "name": self.name,
            "epochs": self.epochs,
            "epoch": self.epoch,
            "step": self.step,
            "batch_in_epoch": in_stream.position if mid_epoch else 0,
            "epoch_rng": in_stream.start_rng if mid_epoch else None,
            "acc": {k: v.cpu() for k, v in acc.items()} if acc is not None else None,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": self._rng_state(gen),
            "outliers": out_stream.state_dict() if out_stream is not None else None,
            "history": [vars(e).copy() for e in self.history.epochs],
        }
        write_checkpoint(self.checkpoint_dir, state)

    def _restore(
        self,
        ckpt: dict[str, Any],
        steps_per_epoch: int,
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
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.scheduler is not None and ckpt["scheduler"] is not None:
            self.scheduler.load_state_dict(ckpt["scheduler"])
        if scaler is not None and ckpt["scaler"] is not None:
            scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.step = int(ckpt["epoch"]), int(ckpt["step"])
        self.history = History([EpochStats(**e) for e in ckpt["history"]])
        if out_stream is not None and ckpt["outliers"] is not None:
            out_stream.load_state_dict(ckpt["outliers"])
        self._set_rng_state(ckpt["rng"], gen)
        acc = ckpt["acc"]
        if acc is not None:
            acc = {k: v.to(self.device) for k, v in acc.items()}
        logger.info("%s: resumed at epoch %d, step %d", self.name, self.epoch + 1, self.step)
        return int(ckpt["batch_in_epoch"]), ckpt["epoch_rng"], acc
