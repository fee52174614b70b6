"""rejectnet's stage two inside a PyTorch Lightning ``Trainer``.

:class:`RejectNetModule` is a ``LightningModule`` around a :class:`~rejectnet.RejectHead`:
its ``training_step`` runs ONE forward pass over ``torch.cat([x_in, x_out])`` and
minimises :class:`~rejectnet.losses.SelfSupervisedRejectLoss`, the loss rejectnet's own
fine-tuner optimises. Feed it :class:`~rejectnet.integrations.OutlierPairs`, which pairs
each in-distribution batch with an outlier batch (5x larger by default). Everything else
(devices, ``precision="bf16-mixed"``, ``accumulate_grad_batches``, ``strategy="ddp"``,
logging, checkpoints) is the ``Trainer``'s.

Requires ``lightning>=2.0`` (``pip install "rejectnet[lightning]"``).

Example:
    >>> import torch, lightning
    >>> from torch import nn
    >>> from rejectnet.integrations import OutlierPairs
    >>> from rejectnet.integrations.lightning import RejectNetModule
    >>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    >>> module = RejectNetModule(model, k=2)
    >>> x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    >>> pairs = OutlierPairs([(x[i : i + 8], y[i : i + 8]) for i in range(0, 32, 8)],
    ...                      [torch.randn(40, 8) + 3])
    >>> trainer = lightning.Trainer(max_epochs=1, accelerator="cpu", logger=False,
    ...     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    >>> trainer.fit(module, pairs)
    >>> module.net.num_classes, module.net.k, trainer.global_step
    (3, 2, 4)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import nn

from rejectnet._batches import (
    Inputs,
    batch_size,
    call_model,
    check_keys,
    extract_logits,
    split_inputs,
)
from rejectnet._validation import check_fraction
from rejectnet.finetune.batching import check_reiterable, pad_values_of
from rejectnet.finetune.optim import choose_optimizer, cosine_schedule
from rejectnet.finetune.options import TrainOptions
from rejectnet.finetune.step import StepBatch, forward_and_loss
from rejectnet.head import RejectHead
from rejectnet.losses import LossTerms, PseudoLabeler, SelfSupervisedRejectLoss
from rejectnet.scores import registry

try:
    import lightning.pytorch as pl
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "rejectnet.integrations.lightning needs Lightning 2.x: pip install 'rejectnet[lightning]'"
    ) from exc

__all__ = ["OptimizerFactory", "RejectNetModule"]

OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
"""``params -> torch.optim.Optimizer``, e.g. ``lambda p: torch.optim.AdamW(p, lr=1e-4)``."""


def _triple(batch: Any) -> tuple[Inputs, torch.Tensor, Inputs]:
    """``(x_in, y, x_out)``, or a TypeError saying how to make one from a plain loader."""
    if (
        isinstance(batch, (tuple, list))
        and len(batch) == 3
        and all(isinstance(part, (torch.Tensor, dict)) for part in batch)
        and isinstance(batch[1], torch.Tensor)
    ):
        return batch[0], batch[1], batch[2]
    got = (
        f"a {type(batch).__name__} of {len(batch)} items "
        f"({', '.join(type(part).__name__ for part in batch)})"
        if isinstance(batch, (tuple, list))
        else f"a {type(batch).__name__}"
    )
    raise TypeError(
        "RejectNetModule trains on (x_in, y, x_out) batches, an in-distribution batch "
        f"with its outlier batch; got {got}. A plain (x, y) loader needs its outliers: "
        "trainer.fit(module, OutlierPairs(in_loader, outlier_loader)) (from "
        "rejectnet.integrations)"
    )


class RejectNetModule(pl.LightningModule):
    """Fine-tune a model with k reject classes (the paper's stage two) in a ``Trainer``.

    Each training batch is ``(x_in, y, x_out)`` (what
    :class:`~rejectnet.integrations.OutlierPairs` yields). The step concatenates
    ``x_in`` and ``x_out``, runs the network once, and minimises
    ``CE(logits_in, y) + lam * CE(logits_out, pseudo-labels)`` over all C + k outputs;
    it logs ``train/loss``, ``train/in_loss`` and ``train/out_loss``. A
    ``validation_step`` on labeled in-distribution batches logs ``val/loss`` and
    ``val/acc`` (accuracy over the C classes).

    **Train mode.** The whole network is put in train mode when fitting starts and at
    every training epoch, and every submodule gets its own mode back when fitting ends.
    ``RejectHead.wrap`` keeps the model's mode and Lightning 2.x keeps the modes of
    submodules, so without this a model that was evaluated before wrapping would be
    fine-tuned in eval mode (batch-norm statistics frozen, dropout off), which trains a
    measurably worse detector.

    Args:
        net: A :class:`~rejectnet.RejectHead`, or a plain classifier together with
            ``k`` (it is then wrapped with ``RejectHead.wrap(net, k=k)``, a copy).
        k: Number of reject classes when ``net`` is not wrapped yet.
        lam: Weight of the outlier loss (the paper's lambda, 5).
        pseudo_labels: ``"random"`` (Algorithm 1) or a callable
            ``(logits_out, num_classes) -> targets``; see
            :class:`~rejectnet.losses.SelfSupervisedRejectLoss`.
        lr: Initial learning rate of the default optimizer (``None``: its default,
            0.01 for SGD, 1e-4 for AdamW).
        optimizer: Optional factory ``params -> Optimizer`` replacing the default, which
            is rejectnet's fine-tuner's (:func:`rejectnet.finetune.optim.choose_optimizer`):
            SGD with Nesterov momentum 0.9 and weight decay 5e-4 for CNN-style models,
            AdamW (weight decay 0.01) for transformer-style ones, with a per-step cosine
            decay of ``lr`` to 0 over ``trainer.estimated_stepping_batches``. With a
            factory there is no scheduler; override :meth:`configure_optimizers` for
            anything else.
        calibration_loader: Optional held-out in-distribution batches; when given, the
            threshold is calibrated on them when fitting ends
            (:meth:`~rejectnet.RejectHead.calibrate`, on every process, so the
            threshold is part of every rank's and every checkpoint's ``state_dict``).
        coverage: Fraction of the calibration inputs to keep, in ``(0, 1]``.
        score: The score to calibrate (default: ``"sum_reject"``).
        keys: ``(input_key, label_key)`` for dict validation batches with other names
            (training batches come from :class:`~rejectnet.integrations.OutlierPairs`,
            which takes its own ``keys=``). Inputs may be named tensors (Hugging Face
            style), passed to the model as keyword arguments; ``x_in`` and ``x_out``
            token sequences are padded to one length with the model's pad id.

    Raises:
        TypeError: If ``net`` is not a module, ``k`` is missing for an unwrapped model,
            or ``optimizer`` is not callable.
        ValueError: If ``k`` is given for an already wrapped model, ``lam`` is negative,
            ``lr`` is not a finite number > 0, ``coverage`` is not in ``(0, 1]`` or
            ``score`` is not a registered score (all checked here, before any step).
        TypeError: Also for a one-shot ``calibration_loader`` (a generator).

    A training batch that is not ``(x_in, y, x_out)`` (a plain ``(x, y)`` loader given
    to ``trainer.fit``) raises a ``TypeError`` saying to wrap the loaders in
    :class:`~rejectnet.integrations.OutlierPairs`.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        k: int | None = None,
        lam: float = 5.0,
        pseudo_labels: Literal["random"] | PseudoLabeler = "random",
        lr: float | None = None,
        optimizer: OptimizerFactory | None = None,
        calibration_loader: Iterable[Any] | None = None,
        coverage: float = 0.95,
        score: str | None = None,
        keys: Any = None,
    ) -> None:
        super().__init__()
        if isinstance(net, RejectHead):
            if k is not None and k != net.k:
                raise ValueError(
                    f"k={k} was given but net is already wrapped with k={net.k}; omit k"
                )
            wrapped = net
        elif isinstance(net, nn.Module):
            if k is None:
                raise TypeError(
                    "net is not wrapped: pass k= (number of reject classes) or wrap it "
                    "first with RejectHead.wrap(model, k)"
                )
            wrapped = RejectHead.wrap(net, k=k)
        else:
            raise TypeError(f"net must be a torch.nn.Module, got {type(net).__name__}")
        if lr is not None:
            if isinstance(lr, bool) or not isinstance(lr, (int, float)):
                raise TypeError(f"lr must be a number > 0 or None, got {type(lr).__name__}")
            if not (math.isfinite(lr) and lr > 0):
                raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        if optimizer is not None and not callable(optimizer):
            raise TypeError(
                "optimizer must be None (SGD) or a factory params -> Optimizer, e.g. "
                f"lambda p: torch.optim.AdamW(p, lr=1e-4); got {type(optimizer).__name__}"
            )
        coverage = check_fraction(coverage, "coverage")
        if score is not None:
            registry.spec(score)  # TypeError / ValueError listing the scores, before any step
        if calibration_loader is not None:
            check_reiterable(calibration_loader, "calibration_loader", "held-out batches")
        self.net = wrapped
        self.loss = SelfSupervisedRejectLoss(
            wrapped.num_classes, lam=lam, pseudo_labels=pseudo_labels
        )
        self.lr = float(lr) if lr is not None else None
        self.optimizer_factory = optimizer
        self.calibration_loader = calibration_loader
        self.coverage = coverage
        self.score = score
        self.keys = check_keys(keys)
        self._modes: dict[str, bool] | None = None

    def forward(self, x: Inputs) -> torch.Tensor:
        """The wrapped network's ``(N, C + k)`` logits (named inputs as keyword arguments)."""
        return extract_logits(call_model(self.net, x))

    def step_terms(self, batch: tuple[Inputs, torch.Tensor, Inputs]) -> LossTerms:
        """The loss of one ``(x_in, y, x_out)`` batch, from one forward pass over both parts.

        The same step function as rejectnet's fine-tuner
        (:func:`rejectnet.finetune.step.forward_and_loss`).

        Args:
            batch: In-distribution inputs, their labels, and outlier inputs.

        Returns:
            The loss and its parts (see :class:`~rejectnet.losses.LossTerms`).
        """
        x_in, y, x_out = _triple(batch)
        if isinstance(x_in, torch.Tensor) and isinstance(x_out, torch.Tensor):
            x_out = x_out.to(x_in.dtype)
        step = StepBatch(x_in, y, x_out, batch_size(x_out), pad_values_of(self.net))
        # the fine-tuner's own step; the Trainer owns the device and the precision
        return forward_and_loss(self, self.loss, step, device=y.device, amp=False).terms

    def training_step(
        self, batch: tuple[Inputs, torch.Tensor, Inputs], batch_idx: int
    ) -> torch.Tensor:
        """One step of Algorithm 1; returns the loss for Lightning to minimise."""
        terms = self.step_terms(batch)
        n_in = batch_size(batch[0])
        self.log("train/loss", terms.loss.detach(), prog_bar=True, batch_size=n_in)
        self.log("train/in_loss", terms.in_loss, batch_size=n_in)
        if terms.out_loss is not None:
            self.log("train/out_loss", terms.out_loss, batch_size=n_in)
        return terms.loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        """Log the in-distribution loss and accuracy of a labeled batch."""
        x, y = split_inputs(batch, "validation batch", keys=self.keys)
        if y is None:
            raise ValueError("validation batches must carry labels: (x, y) or a dict")
        logits = self(x)[:, : self.net.num_classes].float()
        n = batch_size(x)
        self.log("val/loss", nn.functional.cross_entropy(logits, y), batch_size=n, sync_dist=True)
        acc = (logits.argmax(dim=-1) == y).float().mean()
        self.log("val/acc", acc, prog_bar=True, batch_size=n, sync_dist=True)

    def configure_optimizers(self) -> Any:
        """The optimizer (and the default's per-step cosine schedule)."""
        if self.optimizer_factory is not None:
            return self.optimizer_factory(self.net.parameters())
        choice = choose_optimizer(self.net, TrainOptions(lr=self.lr))
        assert choice.lr is not None and choice.weight_decay is not None
        opt: torch.optim.Optimizer
        if choice.name == "adamw":
            opt = torch.optim.AdamW(
                self.net.parameters(), lr=choice.lr, weight_decay=choice.weight_decay
            )
        else:
            opt = torch.optim.SGD(
                self.net.parameters(),
                lr=choice.lr,
                momentum=0.9,
                weight_decay=choice.weight_decay,
                nesterov=True,
            )
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = cosine_schedule(opt, total)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_fit_start(self) -> None:
        """Remember every submodule's mode, then put the whole network in train mode."""
        self._modes = {name: m.training for name, m in self.net.named_modules()}
        self.net.train()

    def on_train_epoch_start(self) -> None:
        """Train mode for the whole network at every epoch (see the class docstring)."""
        self.net.train()

    def on_fit_end(self) -> None:
        """Calibrate when a calibration loader was given; give every submodule its mode back."""
        if self.calibration_loader is not None:
            if self.score is None:
                self.net.calibrate(self.calibration_loader, coverage=self.coverage)
            else:
                self.net.calibrate(
                    self.calibration_loader, coverage=self.coverage, score=self.score
                )
        if self._modes is not None:
            for name, m in self.net.named_modules():
                m.training = self._modes.get(name, m.training)
            self._modes = None
