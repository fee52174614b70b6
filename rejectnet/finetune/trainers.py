"""The public trainers: rejectnet's stage two, Outlier Exposure, and plain stage one."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from rejectnet.finetune.history import Callback, History
from rejectnet.finetune.loop import AmpMode, OptimizerFactory, SchedulerFactory, TrainingLoop
from rejectnet.finetune.objectives import (
    CrossEntropyObjective,
    Objective,
    OutlierExposureObjective,
    SelfSupervisedObjective,
)
from rejectnet.head import RejectHead

__all__ = ["OutlierExposureFinetuner", "SelfSupervisedOODFinetuner", "train_classifier"]


def _check_lam(lam: Any, name: str) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)):
        raise TypeError(f"{name} must be a number >= 0, got {type(lam).__name__}")
    if not (lam >= 0 and lam < float("inf")):
        raise ValueError(f"{name} must be a finite number >= 0, got {lam!r}")
    return float(lam)


class _Trainer:
    """Holds the shared keyword arguments and the loop."""

    loop: TrainingLoop

    def _make_loop(self, model: nn.Module, name: str, opts: dict[str, Any]) -> None:
        self.loop = TrainingLoop(model, self._objective, name=name, **opts)

    def _objective(self, num_classes: int, gen: torch.Generator) -> Objective:
        raise NotImplementedError

    @property
    def history(self) -> History:
        """Statistics of the epochs completed so far."""
        return self.loop.history


class SelfSupervisedOODFinetuner(_Trainer):
    """The paper's stage two: self-supervised OOD fine-tuning with k reject classes.

    Every step draws a labeled in-distribution batch ``(x, y)`` and an unlabeled outlier
    batch ``outlier_ratio`` times larger, runs ONE forward pass over their concatenation
    (so batch-norm statistics see both), and minimises
    ``CE(logits_in, y) + lam * CE(logits_out, target)`` over all C + k outputs. Each
    outlier's target is recomputed at every pass from that same forward (Algorithm 1):
    the argmax when it falls on a reject unit, otherwise a uniformly random reject unit.

    Args:
        model: A :class:`~rejectnet.RejectHead`, or a plain classifier together with
            ``k`` (it is then wrapped with ``RejectHead.wrap(model, k)``, which copies it).
        k: Number of reject classes when ``model`` is not wrapped yet.
        lam: Weight of the outlier loss (the paper's lambda, 5).
        epochs: Passes over the in-distribution loader (the paper: 10 for MNIST).
        outlier_ratio: Outlier batch size over in-distribution batch size (paper: 5).
        lr: Initial learning rate of the default SGD optimizer.
        momentum: SGD momentum.
        weight_decay: SGD weight decay.
        nesterov: Use Nesterov momentum.
        optimizer: Optional factory ``params -> Optimizer`` replacing the default SGD.
        scheduler: ``"cosine"`` (per-step cosine decay to 0, the paper's), ``None`` for a
            constant rate, or a factory ``(optimizer, total_steps) -> LRScheduler``.
        device: Where to train; defaults to the model's device.
        amp: Mixed precision: ``True``/``"bf16"`` for bfloat16 autocast (CPU or CUDA),
            ``"fp16"`` for float16 with a gradient scaler (CUDA only).
        seed: Seeds torch, numpy, Python and the pseudo-label RNG for reproducible runs
            (``None`` leaves the global RNGs alone).
        grad_clip: Optional max gradient norm.
        checkpoint_dir: Folder for crash-safe checkpoints (written atomically at every
            epoch end and every ``checkpoint_every`` steps). Required for ``resume``.
        checkpoint_every: Also checkpoint every this many steps.
        progress: Show a tqdm progress bar (on rank 0 only under torch.distributed).
        callbacks: :class:`~rejectnet.finetune.Callback` instances. Under
            torch.distributed they run on every rank (``loop.rank``, ``loop.is_main``
            tell them apart); one that raises ``StopTraining`` must do so on every rank
            at the same step.
        sync_batchnorm: Under torch.distributed on CUDA, synchronise batch-norm
            statistics across the ranks (``SyncBatchNorm``) while training; the original
            layers, holding the trained statistics, are put back afterwards. No effect
            in a single process.
        channels_last: Convert the model (permanently) and every input batch to the
            ``channels_last`` memory format, which is faster for convolutions on recent
            GPUs with mixed precision.

    Distributed training:
        Launch the same script with ``torchrun --nproc_per_node=N script.py``. The
        trainer uses the process group if one is initialised, or initialises one from
        torchrun's environment variables (``nccl`` on CUDA, else ``gloo``); on CUDA each
        rank trains on ``cuda:LOCAL_RANK``. The model is wrapped in
        ``DistributedDataParallel`` for the forward and backward passes, a
        ``DataLoader`` with the default sampler is re-created with a
        ``DistributedSampler`` (each rank gets ``batch_size`` samples per step; the
        global batch is N times larger), each rank reads a disjoint share of the
        outliers, ranks are seeded ``seed + rank``, epoch statistics are averaged over
        all ranks, and rank 0 alone logs and writes checkpoints, which hold every rank's
        RNG and stream state so that ``resume=True`` continues exactly (with the same
        number of processes). See :mod:`rejectnet.finetune.distributed` for the rules.

    Raises:
        TypeError: If ``model`` is not a module, or ``k`` is missing for an unwrapped model.
        ValueError: If ``lam < 0`` or any other argument is out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import SelfSupervisedOODFinetuner
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> x, y = torch.randn(32, 1, 4, 4), torch.randint(0, 3, (32,))
        >>> in_loader = [(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)]
        >>> outliers = [torch.randn(40, 1, 4, 4) + 3]
        >>> ft = SelfSupervisedOODFinetuner(model, k=2, epochs=2, progress=False)
        >>> history = ft.fit(in_loader, outliers)
        >>> len(history), ft.model.k
        (2, 2)
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        k: int | None = None,
        lam: float = 5.0,
        epochs: int = 10,
        outlier_ratio: float = 5.0,
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        nesterov: bool = True,
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | Literal["cosine"] | None = "cosine",
        device: str | torch.device | None = None,
        amp: AmpMode = False,
        seed: int | None = 0,
        grad_clip: float | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        progress: bool = True,
        callbacks: Sequence[Callback] = (),
        sync_batchnorm: bool = False,
        channels_last: bool = False,
    ) -> None:
        self.lam = _check_lam(lam, "lam")
        if isinstance(model, RejectHead):
            if k is not None and k != model.k:
                raise ValueError(
                    f"k={k} was given but the model is already wrapped with k={model.k}; omit k"
                )
            net = model
        elif isinstance(model, nn.Module):
            if k is None:
                raise TypeError(
                    "model is not wrapped: pass k= (number of reject classes) or wrap it "
                    "first with RejectHead.wrap(model, k)"
                )
            net = RejectHead.wrap(model, k=k)
        else:
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        self.model: RejectHead = net
        self._make_loop(
            net,
            "rejectnet",
            dict(
                epochs=epochs,
                lr=lr,
                momentum=momentum,
                weight_decay=weight_decay,
                nesterov=nesterov,
                optimizer=optimizer,
                scheduler=scheduler,
                outlier_ratio=outlier_ratio,
                device=device,
                amp=amp,
                seed=seed,
                grad_clip=grad_clip,
                checkpoint_dir=checkpoint_dir,
                checkpoint_every=checkpoint_every,
                progress=progress,
                callbacks=callbacks,
                sync_batchnorm=sync_batchnorm,
                channels_last=channels_last,
            ),
        )

    def _objective(self, num_classes: int, gen: torch.Generator) -> Objective:
        return SelfSupervisedObjective(num_classes, self.lam, gen)

    def fit(
        self,
        in_loader: Iterable[Any],
        outlier_loader: Iterable[Any],
        val_loader: Iterable[Any] | None = None,
        *,
        resume: bool = False,
    ) -> History:
        """Fine-tune the wrapped model.

        Args:
            in_loader: Labeled in-distribution batches ``(x, y)`` (or dicts); its length
                defines an epoch.
            outlier_loader: Unlabeled outliers. Batches may be a Tensor, ``(x,)``,
                ``(x, anything)`` or a dict; labels are ignored. Read in its own order and
                restarted (reshuffled, for a shuffled DataLoader) whenever exhausted,
                independently of the in-distribution epochs; its batch size does not
                matter, batches are re-cut to ``outlier_ratio`` times the in-batch.
            val_loader: Optional labeled in-distribution data; accuracy is reported per
                epoch.
            resume: Continue from the latest valid checkpoint in ``checkpoint_dir``.

        Returns:
            Per-epoch statistics.

        Raises:
            ValueError: Before any weight changes, for empty loaders, in- and outlier
                inputs of different shapes, labels outside ``[0, C)`` or a model whose
                logits are not C + k wide.
            FloatingPointError: If the loss becomes NaN or infinite (with the step number).

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import RejectHead, SelfSupervisedOODFinetuner
            >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
            >>> x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
            >>> ft = SelfSupervisedOODFinetuner(net, epochs=1, progress=False)
            >>> history = ft.fit([(x, y)], [torch.randn(80, 8) * 3], val_loader=[(x, y)])
            >>> stats = history[-1]
            >>> stats.steps, 0.0 <= stats.out_on_reject <= 1.0, stats.val_accuracy is not None
            (1, True, True)
        """
        return self.loop.fit(in_loader, outlier_loader, val_loader, resume=resume)


class OutlierExposureFinetuner(_Trainer):
    """Outlier Exposure (Hendrycks et al., 2018) on a plain C-class model.

    Same loop, batches and options as :class:`SelfSupervisedOODFinetuner`; the objective
    is ``CE(in, y) + lam * CE(out, uniform)``. It exists so both methods can be compared
    on the same backbone in the same run. The model is trained in place.

    Args:
        model: A plain C-class classifier (trained in place).
        lam: Weight of the uniform-target loss (OE's default, 0.5).
        **kwargs: Every other keyword of :class:`SelfSupervisedOODFinetuner` except ``k``.

    Raises:
        TypeError: If ``model`` is already wrapped by ``RejectHead``, or ``k`` or an
            unknown keyword is given.
        ValueError: If ``lam < 0`` or any other argument is out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import OutlierExposureFinetuner
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
        >>> x, y = torch.randn(16, 1, 4, 4), torch.randint(0, 3, (16,))
        >>> ft = OutlierExposureFinetuner(model, epochs=1, progress=False)
        >>> ft.fit([(x, y)], [torch.randn(80, 1, 4, 4)])[0].steps
        1
    """

    def __init__(self, model: nn.Module, *, lam: float = 0.5, **kwargs: Any) -> None:
        if isinstance(model, RejectHead):
            raise TypeError(
                "OutlierExposureFinetuner trains a plain C-class model; pass the model "
                "before RejectHead.wrap (or net.unwrap())"
            )
        if "k" in kwargs:
            raise TypeError("OutlierExposureFinetuner takes no k: OE adds no reject classes")
        self.lam = _check_lam(lam, "lam")
        self.model = model
        self._make_loop(model, "outlier-exposure", _defaults(kwargs))

    def _objective(self, num_classes: int, gen: torch.Generator) -> Objective:
        return OutlierExposureObjective(num_classes, self.lam)

    def fit(
        self,
        in_loader: Iterable[Any],
        outlier_loader: Iterable[Any],
        val_loader: Iterable[Any] | None = None,
        *,
        resume: bool = False,
    ) -> History:
        """Fine-tune with Outlier Exposure; arguments as :meth:`SelfSupervisedOODFinetuner.fit`.

        Args:
            in_loader: Labeled in-distribution batches ``(x, y)`` (or dicts); its length
                defines an epoch.
            outlier_loader: Unlabeled outliers (a Tensor, ``(x,)``, ``(x, anything)`` or
                a dict per batch; labels are ignored), re-cut to ``outlier_ratio`` times
                the in-batch size.
            val_loader: Optional labeled in-distribution data; accuracy is reported per
                epoch.
            resume: Continue from the latest valid checkpoint in ``checkpoint_dir``.

        Returns:
            Per-epoch statistics.

        Raises:
            ValueError: Before any weight changes, for empty loaders, in- and outlier
                inputs of different shapes or labels outside ``[0, C)``.
            FloatingPointError: If the loss becomes NaN or infinite.

        Example:
            >>> import torch
            >>> from torch import nn
            >>> from rejectnet import OutlierExposureFinetuner
            >>> model = nn.Linear(8, 3)
            >>> x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
            >>> history = OutlierExposureFinetuner(model, epochs=2, progress=False).fit(
            ...     [(x, y)], [torch.randn(80, 8)]
            ... )
            >>> len(history), history[-1].out_on_reject is None
            (2, True)
        """
        return self.loop.fit(in_loader, outlier_loader, val_loader, resume=resume)


class _Supervised(_Trainer):
    def __init__(self, model: nn.Module, opts: dict[str, Any]) -> None:
        self.model = model
        self._make_loop(model, "stage-one", opts)

    def _objective(self, num_classes: int, gen: torch.Generator) -> Objective:
        return CrossEntropyObjective(num_classes)


def _defaults(kwargs: dict[str, Any]) -> dict[str, Any]:
    opts: dict[str, Any] = dict(
        epochs=10,
        lr=0.01,
        momentum=0.9,
        weight_decay=5e-4,
        nesterov=True,
        optimizer=None,
        scheduler="cosine",
        outlier_ratio=5.0,
        device=None,
        amp=False,
        seed=0,
        grad_clip=None,
        checkpoint_dir=None,
        checkpoint_every=None,
        progress=True,
        callbacks=(),
        sync_batchnorm=False,
        channels_last=False,
    )
    unknown = sorted(set(kwargs) - set(opts))
    if unknown:
        raise TypeError(f"unexpected keyword argument(s) {unknown}; valid: {sorted(opts)}")
    opts.update(kwargs)
    return opts


def train_classifier(
    model: nn.Module,
    loader: Iterable[Any],
    epochs: int = 10,
    *,
    val_loader: Iterable[Any] | None = None,
    resume: bool = False,
    **kwargs: Any,
) -> History:
    """Plain supervised training (the paper's stage one), in place.

    Uses the same loop as the fine-tuners: SGD with a per-step cosine schedule by default
    (the paper: lr 0.01, batch 64, 10 epochs for MNIST), progress bar, seeding, mixed
    precision and crash-safe checkpoints.

    Args:
        model: The classifier to train (modified in place).
        loader: Labeled batches ``(x, y)``.
        epochs: Passes over ``loader``.
        val_loader: Optional labeled data for per-epoch accuracy.
        resume: Continue from the latest checkpoint in ``checkpoint_dir``.
        **kwargs: ``lr``, ``momentum``, ``weight_decay``, ``nesterov``, ``optimizer``,
            ``scheduler``, ``device``, ``amp``, ``seed``, ``grad_clip``,
            ``checkpoint_dir``, ``checkpoint_every``, ``progress``, ``callbacks``,
            ``sync_batchnorm``, ``channels_last``, as in
            :class:`SelfSupervisedOODFinetuner` (which also describes distributed
            training with ``torchrun``).

    Returns:
        Per-epoch statistics.

    Raises:
        TypeError: If ``outlier_ratio`` or an unknown keyword is given, or ``loader``
            has no length.
        ValueError: If the loader is empty, its labels are not class indices in
            ``[0, C)``, or an option is out of range.
        FloatingPointError: If the loss becomes NaN or infinite.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import train_classifier
        >>> model = nn.Linear(4, 2)
        >>> x = torch.randn(64, 4); y = (x[:, 0] > 0).long()
        >>> h = train_classifier(model, [(x, y)], epochs=30, lr=0.5, progress=False)
        >>> h[-1].in_accuracy > 0.9
        True
    """
    if "outlier_ratio" in kwargs:
        raise TypeError("train_classifier takes no outlier_ratio: stage one uses no outliers")
    trainer = _Supervised(model, _defaults({**kwargs, "epochs": epochs}))
    return trainer.loop.fit(loader, None, val_loader, resume=resume)
