"""The training options, written once: one frozen dataclass, checked once.

Every fine-tuner (:class:`~rejectnet.finetune.Finetuner` and its presets
:class:`~rejectnet.SelfSupervisedOODFinetuner`, :class:`~rejectnet.OutlierExposureFinetuner`
and :func:`~rejectnet.train_classifier`) takes these as keyword arguments (or a ready
:class:`TrainOptions` as ``options=``). A new option is one field here.

Errors follow one rule everywhere in rejectnet: a value of the wrong *type* (``epochs="3"``,
``lr="x"``) raises :class:`TypeError`; a value of the right type but outside its range
(``epochs=0``, ``lr=-1``) raises :class:`ValueError`. Both name the option and say what
would be valid.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from rejectnet._batches import check_keys
from rejectnet._validation import check_flag, check_int, check_number, check_seed
from rejectnet.finetune.callbacks import Callback

__all__ = [
    "MAX_OUTLIER_RATIO",
    "MAX_OUTLIER_ROWS",
    "AmpMode",
    "OptimizerFactory",
    "SchedulerFactory",
    "TrainOptions",
    "check_outlier_ratio",
]

MAX_OUTLIER_RATIO = 1000.0
"""The largest ``outlier_ratio`` (outlier rows per in-distribution row; the paper's is 5).
Beyond it the in-distribution rows are under 0.1% of every forward pass, and a ratio of
``1e9`` is a typing mistake that would allocate without bound."""
MAX_OUTLIER_ROWS = 2**20
"""The most outlier rows one step may ask for (``outlier_ratio`` times the batch size),
checked on the first batch before training starts."""

AmpMode = bool | Literal["bf16", "fp16"]
"""``False``, ``True``/``"bf16"`` (bfloat16 autocast) or ``"fp16"`` (float16, CUDA only)."""
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
"""``params -> Optimizer``, e.g. ``lambda p: torch.optim.AdamW(p, lr=1e-3)``."""
SchedulerFactory = Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LRScheduler]
"""``(optimizer, total_optimizer_steps) -> LRScheduler``, stepped after every optimizer step."""


def check_outlier_ratio(value: Any, name: str = "outlier_ratio") -> float:
    """A number in ``(0, MAX_OUTLIER_RATIO]``, as a float.

    Raises:
        TypeError: Not a real number.
        ValueError: Not finite, not > 0, or above :data:`MAX_OUTLIER_RATIO`.

    Example:
        >>> check_outlier_ratio(5)
        5.0
    """
    ratio = check_number(value, name, positive=True)
    if ratio > MAX_OUTLIER_RATIO:
        raise ValueError(
            f"{name} must be a number in (0, {MAX_OUTLIER_RATIO:g}] (outlier rows per "
            f"in-distribution row; the paper uses 5), got {value!r}"
        )
    return ratio


@dataclass(frozen=True)
class TrainOptions:
    """Everything about *how* to train, shared by every fine-tuner and preset.

    Attributes:
        epochs: Passes over the in-distribution loader (the paper: 10 for MNIST).
        lr: Initial learning rate of the built-in optimizer; ``None`` (default) takes
            the optimizer's own default: 0.01 for SGD (the paper's), 1e-4 for AdamW.
        momentum: SGD momentum.
        weight_decay: Weight decay of the built-in optimizer; ``None`` (default): 5e-4
            for SGD, 0.01 for AdamW.
        nesterov: Use Nesterov momentum (SGD).
        optimizer: ``None`` / ``"auto"`` (default): SGD with Nesterov momentum for
            CNN-style models, AdamW for transformer-style ones (attention layers, a
            Hugging Face model, a LayerNorm-normalised net; see
            :func:`rejectnet.finetune.optim.model_family`); ``"sgd"`` or ``"adamw"`` to
            force one; or a factory ``params -> Optimizer``.
        scheduler: ``"cosine"`` (per-step cosine decay to 0, the paper's), ``None`` for a
            constant rate, or a factory ``(optimizer, total_steps) -> LRScheduler``.
        outlier_ratio: Outlier batch size over in-distribution batch size (paper: 5), at
            most :data:`MAX_OUTLIER_RATIO` (1000); a step's outlier rows are also bounded
            by :data:`MAX_OUTLIER_ROWS` (checked on the first batch, before training).
        accumulate_grad_batches: Accumulate the gradients of this many in-distribution
            batches (each with its own outlier batch) before an optimizer step; the loss
            is divided by it, and a last partial group at the end of an epoch is stepped
            too. ``step`` counts optimizer steps.
        device: Where to train; defaults to the model's device.
        amp: Mixed precision: ``True``/``"bf16"`` for bfloat16 autocast (CPU or CUDA),
            ``"fp16"`` for float16 with a gradient scaler (CUDA only).
        seed: Seeds torch, numpy and Python (``seed + rank`` under torch.distributed)
            for reproducible runs; the random reject units of the pseudo-labels and any
            outlier synthesis draw from torch's generators, so they follow it too.
            ``None`` leaves the global RNGs alone. At most ``2**32 - 1``.
        grad_clip: Optional max gradient norm.
        checkpoint_dir: Folder for crash-safe checkpoints (written atomically at every
            epoch end and every ``checkpoint_every`` optimizer steps). Required for
            ``resume``.
        checkpoint_every: Also checkpoint every this many optimizer steps.
        progress: Show progress: a tqdm bar with the running loss on a terminal, one line
            per epoch otherwise (on rank 0 only under torch.distributed). The same
            per-epoch line goes to the ``"rejectnet"`` logger at INFO level.
        callbacks: :class:`~rejectnet.finetune.Callback` instances.
        sync_batchnorm: Under torch.distributed on CUDA, synchronise batch-norm
            statistics across the ranks while training.
        channels_last: Convert the model (permanently) and every input batch to the
            ``channels_last`` memory format.
        outlier_signal: Optional outlier signal (see :mod:`rejectnet.outliers`): input-
            space synthesis, blending and feature-space virtual outliers that extend or
            replace the outlier pool. ``None`` (default) trains on the pool alone, as the
            paper does.
        keys: How to read dict batches whose names differ from the defaults:
            ``(input_key, label_key)``, ``input_key`` one key (one input tensor) or a
            tuple of keys (named tensors passed to the model as keyword arguments,
            ``(("input_ids", "attention_mask"), "labels")``), ``label_key`` the key of
            the labels. ``None`` (default): the one rule of :mod:`rejectnet._batches`
            (labels under ``y``/``label``/``labels``/``target``/``targets``, every
            other key a model input). A key that would be dropped raises.

    Raises:
        TypeError: An option of the wrong type.
        ValueError: An option of the right type outside its range.

    Example:
        >>> opts = TrainOptions(epochs=3, lr=0.05)
        >>> opts.epochs, opts.outlier_ratio, opts.replace(epochs=1).epochs
        (3, 5.0, 1)
        >>> TrainOptions(epochs="3")
        Traceback (most recent call last):
        ...
        TypeError: epochs must be a positive int (>= 1), got str '3'
    """

    epochs: int = 10
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float | None = None
    nesterov: bool = True
    optimizer: OptimizerFactory | Literal["auto", "sgd", "adamw"] | None = None
    scheduler: SchedulerFactory | Literal["cosine"] | None = "cosine"
    outlier_ratio: float = 5.0
    accumulate_grad_batches: int = 1
    device: str | torch.device | None = None
    amp: AmpMode = False
    seed: int | None = 0
    grad_clip: float | None = None
    checkpoint_dir: str | os.PathLike[str] | None = None
    checkpoint_every: int | None = None
    progress: bool = True
    callbacks: Sequence[Callback] = field(default_factory=tuple)
    sync_batchnorm: bool = False
    channels_last: bool = False
    outlier_signal: Any = None
    keys: Any = None

    def __post_init__(self) -> None:
        check_int(self.epochs, "epochs")
        if self.lr is not None:
            check_number(self.lr, "lr", positive=True)
        check_number(self.momentum, "momentum")
        if self.weight_decay is not None:
            check_number(self.weight_decay, "weight_decay")
        check_flag(self.nesterov, "nesterov")
        _check_optimizer(self.optimizer)
        _check_scheduler(self.scheduler)
        check_outlier_ratio(self.outlier_ratio, "outlier_ratio")
        check_int(self.accumulate_grad_batches, "accumulate_grad_batches")
        if self.device is not None:
            object.__setattr__(self, "device", _check_device(self.device))
        if self.amp not in (False, True, "bf16", "fp16") or (not isinstance(self.amp, (bool, str))):
            raise ValueError(f"amp must be False, True, 'bf16' or 'fp16', got {self.amp!r}")
        check_seed(self.seed, allow_none=True)
        if self.grad_clip is not None:
            check_number(self.grad_clip, "grad_clip", positive=True)
        if self.checkpoint_dir is not None and not isinstance(
            self.checkpoint_dir, (str, os.PathLike)
        ):
            raise TypeError(
                "checkpoint_dir must be a str or path (a folder), or None; got "
                f"{type(self.checkpoint_dir).__name__}"
            )
        check_int(self.checkpoint_every, "checkpoint_every", allow_none=True)
        check_flag(self.progress, "progress")
        object.__setattr__(self, "callbacks", _check_callbacks(self.callbacks))
        object.__setattr__(self, "keys", check_keys(self.keys))
        check_flag(self.sync_batchnorm, "sync_batchnorm")
        check_flag(self.channels_last, "channels_last")
        if self.outlier_signal is not None:
            _check_outlier_signal(self.outlier_signal)

    @property
    def checkpoint_path(self) -> Path | None:
        """``checkpoint_dir`` as a :class:`~pathlib.Path` (``None`` when unset)."""
        return Path(self.checkpoint_dir) if self.checkpoint_dir is not None else None

    def replace(self, **changes: Any) -> TrainOptions:
        """A copy with some options changed (checked again).

        Args:
            **changes: Option names and their new values.

        Returns:
            The new options.

        Raises:
            TypeError: For an unknown option name or a value of the wrong type.
            ValueError: For a value out of range.
        """
        return TrainOptions.from_kwargs({**self.as_dict(), **changes})

    def as_dict(self) -> dict[str, Any]:
        """The options as a plain ``{name: value}`` dict (a shallow copy)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def names(cls) -> list[str]:
        """The valid option names, sorted."""
        return sorted(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_kwargs(
        cls, kwargs: Mapping[str, Any], *, base: TrainOptions | None = None
    ) -> TrainOptions:
        """Build options from keyword arguments, refusing unknown names.

        Args:
            kwargs: Option names and values.
            base: Options to start from (defaults: the dataclass defaults).

        Returns:
            The checked options.

        Raises:
            TypeError: For an unknown option (the message lists the valid ones) or a
                value of the wrong type.
            ValueError: For a value out of range.
        """
        unknown = sorted(set(kwargs) - set(cls.names()))
        if unknown:
            raise TypeError(
                f"unexpected keyword argument(s) {unknown}; valid options: {cls.names()}"
            )
        start = base.as_dict() if base is not None else {}
        return cls(**{**start, **kwargs})


def _check_optimizer(optimizer: Any) -> None:
    if isinstance(optimizer, str) and optimizer in ("auto", "sgd", "adamw"):
        return
    if optimizer is not None and not callable(optimizer):
        raise TypeError(
            "optimizer must be None ('auto'), 'sgd', 'adamw' or a factory callable "
            "params -> Optimizer, e.g. lambda p: torch.optim.AdamW(p, lr=1e-3); got "
            f"{optimizer!r}"
        )


def _check_scheduler(scheduler: Any) -> None:
    if isinstance(scheduler, str):
        if scheduler != "cosine":
            raise ValueError(
                "scheduler must be 'cosine', None, or a factory (optimizer, total_steps) "
                f"-> LRScheduler; got {scheduler!r}"
            )
    elif scheduler is not None and not callable(scheduler):
        raise TypeError(f"scheduler must be 'cosine', None or a callable, got {scheduler!r}")


def _check_device(device: Any) -> torch.device:
    if not isinstance(device, (str, torch.device)):
        raise TypeError(
            "device must be a str such as 'cpu' or 'cuda:0', a torch.device, or None; "
            f"got {type(device).__name__}"
        )
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(
            f"device must be a torch device such as 'cpu', 'cuda' or 'cuda:0'; got "
            f"{device!r} ({err})"
        ) from None


def _check_callbacks(callbacks: Any) -> tuple[Callback, ...]:
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, (Sequence, tuple, list)):
        raise TypeError(f"callbacks must be a list of Callback instances, got {callbacks!r}")
    for cb in callbacks:
        if not isinstance(cb, Callback):
            raise TypeError(
                "callbacks must be rejectnet.finetune.Callback instances (subclass it and "
                f"override on_step_end/on_epoch_end); got {type(cb).__name__}"
            )
    return tuple(callbacks)


def _check_outlier_signal(signal: Any) -> None:
    missing = [
        m
        for m in ("attach", "detach", "outlier_batch", "extra_outlier_logits")
        if not callable(getattr(signal, m, None))
    ]
    if missing:
        raise TypeError(
            "outlier_signal must be an outlier signal from rejectnet.outliers (an object "
            f"with attach/detach/outlier_batch/extra_outlier_logits); "
            f"{type(signal).__name__} lacks {missing}"
        )
