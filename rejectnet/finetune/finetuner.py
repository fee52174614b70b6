"""The open fine-tuner: any objective, the options of :class:`TrainOptions`, one loop.

Every step draws a labeled in-distribution batch and (for objectives that use outliers)
an outlier batch ``outlier_ratio`` times larger, runs ONE forward pass over their
concatenation so that batch-norm statistics see both, and hands the split logits to the
objective (:mod:`rejectnet.finetune.step`). :meth:`Finetuner.fit` is a short driver of
:class:`~rejectnet.finetune.run.Run`, which holds one fit's state, streams, optimizer
step, loss watch, outlier signal and checkpoints. The parts around it each have one job:
:mod:`~rejectnet.finetune.preflight` (checks before any weight changes),
:mod:`~rejectnet.finetune.optim` (optimizer, schedule, accumulation, clipping, scaling),
:mod:`~rejectnet.finetune.stats` (epoch statistics), :mod:`~rejectnet.finetune.resume`
and :mod:`~rejectnet.finetune.checkpoint` (checkpoints and resume),
:mod:`~rejectnet.finetune.progress` and :mod:`~rejectnet.finetune.distributed`.

Distributed training: when a process group is initialised (or ``torchrun``'s
environment variables are set), the model trains through ``DistributedDataParallel``
(``finetuner.model`` stays the unwrapped module), each rank gets a disjoint share of the
in-distribution data and of the outliers, ranks are seeded ``seed + rank`` (dropout masks
and the random reject units of the pseudo-labels differ between ranks), epoch statistics
are all-reduced, and rank 0 alone logs, shows progress and writes checkpoints.

On CUDA the step has no host synchronisation: batches are copied from pinned memory with
``non_blocking=True``, and a non-finite loss is noticed on the device and read only at
checkpoint and epoch boundaries (:class:`~rejectnet.finetune.nonfinite.LossWatch`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from rejectnet._batches import BatchKeys, check_keys
from rejectnet.finetune import distributed as dist_utils
from rejectnet.finetune.collapse import measure
from rejectnet.finetune.history import History
from rejectnet.finetune.objectives import Objective
from rejectnet.finetune.options import TrainOptions
from rejectnet.finetune.plan import RunSpec, identity_of, plan_run, synced_batchnorm
from rejectnet.finetune.preflight import Preflight
from rejectnet.finetune.resume import RunState
from rejectnet.finetune.run import Run

__all__ = ["Finetuner"]

logger = logging.getLogger("rejectnet")


class Finetuner:
    """Train ``model`` on any objective with rejectnet's loop.

    The presets :class:`~rejectnet.SelfSupervisedOODFinetuner` (the paper's stage two),
    :class:`~rejectnet.OutlierExposureFinetuner` and :func:`~rejectnet.train_classifier`
    are this class with a fixed objective. Use it directly for your own objective: any
    ``(logits_in, targets, logits_out) -> loss`` callable (see
    :mod:`rejectnet.finetune.objectives`).

    Args:
        model: The module to train, in place (a :class:`~rejectnet.RejectHead` for
            reject-class objectives). It is put in train mode for the fit, whatever mode
            it was in, and left in train mode.
        objective: The loss, e.g. ``rejectnet.losses.SelfSupervisedRejectLoss(C)``.
        options: A :class:`TrainOptions`; keyword options override its fields.
        name: The run's name (in logs, progress and checkpoints).
        **kwargs: Any :class:`TrainOptions` field (``epochs=``, ``lr=``, ...).

    Attributes:
        model: The module being trained.
        objective: The objective.
        options: The checked options.
        device: The training device (set by ``fit``).
        train_loader: The in-distribution loader this rank iterates (re-created with a
            ``DistributedSampler`` under torch.distributed when needed; set by ``fit``).

    Raises:
        TypeError: If ``model`` is not a module, ``objective`` is not callable, or an
            option is unknown or of the wrong type.
        ValueError: If an option is out of range.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import RejectHead
        >>> from rejectnet.finetune import Finetuner
        >>> from rejectnet.losses import SelfSupervisedRejectLoss
        >>> net = RejectHead.wrap(nn.Linear(8, 3), k=2)
        >>> x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
        >>> ft = Finetuner(net, SelfSupervisedRejectLoss(3, lam=5.0), epochs=2, progress=False)
        >>> len(ft.fit([(x, y)], [torch.randn(80, 8) * 3]))
        2
    """

    def __init__(
        self,
        model: nn.Module,
        objective: Objective,
        *,
        options: TrainOptions | None = None,
        name: str = "finetune",
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not callable(objective):
            raise TypeError(
                "objective must be a callable (logits_in, targets, logits_out) -> loss, e.g. "
                f"rejectnet.losses.SelfSupervisedRejectLoss(C); got {type(objective).__name__}"
            )
        if options is not None and not isinstance(options, TrainOptions):
            raise TypeError(f"options must be a TrainOptions or None, got {type(options).__name__}")
        self.model = model
        self.objective = objective
        self.options = TrainOptions.from_kwargs(kwargs, base=options)
        self.name = name
        self._run = RunState(name, self.options.epochs, history=History())
        self._ctx = dist_utils.DistContext()
        self.device = torch.device("cpu")
        self.train_loader: Iterable[Any] | None = None
        self._keys: BatchKeys | None = self.options.keys

    def _run_identity(self, num_classes: int) -> dict[str, Any]:
        """num_classes, k and the run fingerprint, written into every checkpoint."""
        spec = RunSpec(self.name, self.model, self.objective, self.options, self._keys)
        return identity_of(spec, num_classes)

    # ------------------------------------------------------------------ views
    @property
    def rank(self) -> int:
        """This process's rank (0 when not distributed)."""
        return self._ctx.rank

    @property
    def world_size(self) -> int:
        """Number of training processes (1 when not distributed)."""
        return self._ctx.world_size

    @property
    def history(self) -> History:
        """Statistics of the epochs completed so far."""
        assert self._run.history is not None
        return self._run.history

    @property
    def step(self) -> int:
        """Optimizer steps taken so far in the whole run."""
        return self._run.step

    @property
    def epoch(self) -> int:
        """The current (0-based) epoch."""
        return self._run.epoch

    @property
    def is_main(self) -> bool:
        """Whether this process logs and writes checkpoints (rank 0)."""
        return self._ctx.is_main

    # ------------------------------------------------------------------ fit
    def fit(
        self,
        in_loader: Iterable[Any],
        outlier_loader: Iterable[Any] | None = None,
        val_loader: Iterable[Any] | None = None,
        *,
        resume: bool = False,
        keys: Any = None,
    ) -> History:
        """Train.

        Args:
            in_loader: Labeled in-distribution batches ``(x, y)`` (or dicts); its length
                defines an epoch.
            outlier_loader: Unlabeled outliers (a Tensor, ``(x,)``, ``(x, anything)`` or a
                dict per batch; labels ignored), read in its own order, restarted when
                exhausted, re-cut to ``outlier_ratio`` times the in-batch. ``None`` for
                objectives without outliers, or with an ``outlier_signal`` that
                synthesises them.
            val_loader: Optional labeled in-distribution data; accuracy is reported per
                epoch.
            resume: Continue from the latest valid checkpoint in ``checkpoint_dir``.
            keys: ``(input_key, label_key)`` for dict batches with other names (see
                :class:`TrainOptions`' ``keys``; this one wins), e.g.
                ``(("input_ids", "attention_mask"), "intent")``. Dict batches of named
                tensors (Hugging Face style) need no ``keys``: the label is under
                ``labels`` (or ``y``, ``label``, ``target``, ``targets``) and every
                other key goes to the model as a keyword argument.

        Returns:
            Per-epoch statistics.

        Raises:
            TypeError: Loaders of the wrong kind (a bare tensor, a one-shot iterator, no
                length).
            ValueError: Before any weight changes, for empty loaders, in- and outlier
                inputs of different shapes, labels outside ``[0, C)``, or a model whose
                logits do not fit the objective.
            CheckpointError: If ``resume`` finds a checkpoint that does not fit this run;
                the weights are then untouched.
            FloatingPointError: If the loss becomes NaN or infinite (with the step number).
        """
        if not isinstance(resume, bool):
            raise TypeError(f"resume must be True or False, got {resume!r}")
        self._keys = check_keys(keys) if keys is not None else self.options.keys
        spec = RunSpec(self.name, self.model, self.objective, self.options, self._keys)
        plan = plan_run(spec, in_loader, outlier_loader, resume=resume)
        self._ctx, self.device, self.train_loader = plan.ctx, plan.device, plan.in_loader
        with synced_batchnorm(spec, plan.ctx):
            run = Run(spec, plan, val_loader)
            run.check_resume()  # every refusal before any weight, state or RNG is touched
            self._run = run.state
            run.resume()
            run.fit()
        return self.history

    def evaluate_accuracy(
        self,
        loader: Iterable[Any],
        pre: Preflight | None = None,
        device: torch.device | None = None,
    ) -> float:
        """Accuracy over the C classes on a labeled loader, in eval mode.

        Under torch.distributed every rank evaluates the whole loader (the weights are
        the same on every rank, so the result is too).

        Args:
            loader: Labeled batches.
            pre: Preflight results of the fit (C); defaults to the model's own C.
            device: Where to evaluate (default: the model's device).

        Returns:
            The accuracy as a fraction.

        Raises:
            ValueError: If the batches carry no labels.
        """
        c = pre.num_classes if pre is not None else None
        return measure(self.model, loader, num_classes=c, device=device, keys=self._keys).accuracy
