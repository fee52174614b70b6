"""The presets: rejectnet's stage two, Outlier Exposure, and plain stage one.

Each is a :class:`~rejectnet.finetune.Finetuner` with a fixed objective from
:mod:`rejectnet.losses`; every training option is a :class:`TrainOptions` field, passed
as a keyword argument.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import nn

from rejectnet.finetune.finetuner import Finetuner
from rejectnet.finetune.history import History
from rejectnet.finetune.options import TrainOptions
from rejectnet.head import RejectHead
from rejectnet.losses import (
    CrossEntropyLoss,
    OutlierExposureLoss,
    PseudoLabeler,
    SelfSupervisedRejectLoss,
)

__all__ = ["OutlierExposureFinetuner", "SelfSupervisedOODFinetuner", "train_classifier"]


def _wrapped(model: nn.Module, k: int | None) -> RejectHead:
    if isinstance(model, RejectHead):
        if k is not None and k != model.k:
            raise ValueError(
                f"k={k} was given but the model is already wrapped with k={model.k}; omit k"
            )
        return model
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if k is None:
        raise TypeError(
            "model is not wrapped: pass k= (number of reject classes) or wrap it first with "
            "RejectHead.wrap(model, k)"
        )
    return RejectHead.wrap(model, k=k)


class SelfSupervisedOODFinetuner(Finetuner):
    """The paper's stage two: self-supervised OOD fine-tuning with k reject classes.

    Every step draws a labeled in-distribution batch ``(x, y)`` and an unlabeled outlier
    batch ``outlier_ratio`` times larger, runs ONE forward pass over their concatenation
    (so batch-norm statistics see both), and minimises
    :class:`~rejectnet.losses.SelfSupervisedRejectLoss`:
    ``CE(logits_in, y) + lam * CE(logits_out, target)`` over all C + k outputs. Each
    outlier's target is recomputed at every pass from that same forward (Algorithm 1):
    the argmax when it falls on a reject unit, otherwise a uniformly random reject unit.
    With the default arguments this is Algorithm 1 exactly.

    Args:
        model: A :class:`~rejectnet.RejectHead`, or a plain classifier together with
            ``k`` (it is then wrapped with ``RejectHead.wrap(model, k)``, which copies it).
        k: Number of reject classes when ``model`` is not wrapped yet.
        lam: Weight of the outlier loss (the paper's lambda, 5).
        pseudo_labels: ``"random"`` (Algorithm 1) or a labeler callable, e.g.
            :class:`rejectnet.outliers.ClusterLabeler` (beyond the paper).
        options: A :class:`~rejectnet.finetune.TrainOptions` to start from.
        **kwargs: Any :class:`~rejectnet.finetune.TrainOptions` field: ``epochs`` (10),
            ``outlier_ratio`` (5), ``lr`` (SGD 0.01 for CNNs, AdamW 1e-4 for
            transformers), ``momentum``, ``weight_decay``,
            ``nesterov``, ``optimizer``, ``scheduler`` (``"cosine"``),
            ``accumulate_grad_batches``, ``device``, ``amp``, ``seed`` (0),
            ``grad_clip``, ``checkpoint_dir``, ``checkpoint_every``, ``progress``,
            ``callbacks``, ``sync_batchnorm``, ``channels_last``, ``outlier_signal``.

    Distributed training:
        Launch the same script with ``torchrun --nproc_per_node=N script.py``; see
        :mod:`rejectnet.finetune.distributed` and the multi-GPU how-to.

    Raises:
        TypeError: If ``model`` is not a module, ``k`` is missing for an unwrapped model,
            or an option is unknown or of the wrong type.
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

    model: RejectHead

    def __init__(
        self,
        model: nn.Module,
        *,
        k: int | None = None,
        lam: float = 5.0,
        pseudo_labels: str | PseudoLabeler = "random",
        options: TrainOptions | None = None,
        **kwargs: Any,
    ) -> None:
        net = _wrapped(model, k)
        loss = SelfSupervisedRejectLoss(net.num_classes, lam, pseudo_labels=pseudo_labels)
        self.lam = loss.lam
        super().__init__(net, loss, options=options, name="rejectnet", **kwargs)

    def fit(
        self,
        in_loader: Iterable[Any],
        outlier_loader: Iterable[Any] | None = None,
        val_loader: Iterable[Any] | None = None,
        *,
        resume: bool = False,
        keys: Any = None,
    ) -> History:
        """Fine-tune the wrapped model; see :meth:`Finetuner.fit`.

        Args:
            in_loader: Labeled in-distribution batches ``(x, y)`` (or dicts); its length
                defines an epoch.
            outlier_loader: Unlabeled outliers. Batches may be a Tensor, ``(x,)``,
                ``(x, anything)`` or a dict; labels are ignored. Read in its own order and
                restarted (reshuffled, for a shuffled DataLoader) whenever exhausted,
                independently of the in-distribution epochs; its batch size does not
                matter, batches are re-cut to ``outlier_ratio`` times the in-batch.
                ``None`` only with an ``outlier_signal`` that synthesises outliers.
            val_loader: Optional labeled in-distribution data; accuracy is reported per
                epoch.
            resume: Continue from the latest valid checkpoint in ``checkpoint_dir``.
            keys: ``(input_key, label_key)`` for dict batches with other names, e.g.
                ``(("input_ids", "attention_mask"), "intent")`` (also a constructor
                option). Hugging Face-style dicts (``input_ids``, ``attention_mask``,
                ..., ``labels``) need none: every key but the label goes to the model
                as a keyword argument, token sequences of different lengths are padded
                with the model's pad id in the one forward pass.

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
        return super().fit(in_loader, outlier_loader, val_loader, resume=resume, keys=keys)


class OutlierExposureFinetuner(Finetuner):
    """Outlier Exposure (Hendrycks et al., 2019) on a plain C-class model.

    Same loop, batches and options as :class:`SelfSupervisedOODFinetuner`; the objective
    is :class:`~rejectnet.losses.OutlierExposureLoss`, ``CE(in, y) + lam * CE(out,
    uniform)``. It exists so both methods can be compared on the same backbone in the
    same run (with the same ``outlier_signal``, too). The model is trained in place.

    Args:
        model: A plain C-class classifier (trained in place).
        lam: Weight of the uniform-target loss (OE's default, 0.5).
        options: A :class:`~rejectnet.finetune.TrainOptions` to start from.
        **kwargs: Any :class:`~rejectnet.finetune.TrainOptions` field.

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

    def __init__(
        self,
        model: nn.Module,
        *,
        lam: float = 0.5,
        options: TrainOptions | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(model, RejectHead):
            raise TypeError(
                "OutlierExposureFinetuner trains a plain C-class model; pass the model "
                "before RejectHead.wrap (or net.unwrap())"
            )
        if "k" in kwargs:
            raise TypeError("OutlierExposureFinetuner takes no k: OE adds no reject classes")
        loss = OutlierExposureLoss(lam)
        self.lam = loss.lam
        super().__init__(model, loss, options=options, name="outlier-exposure", **kwargs)


def train_classifier(
    model: nn.Module,
    loader: Iterable[Any],
    epochs: int = 10,
    *,
    val_loader: Iterable[Any] | None = None,
    resume: bool = False,
    options: TrainOptions | None = None,
    **kwargs: Any,
) -> History:
    """Plain supervised training (the paper's stage one), in place.

    Uses the same loop as the fine-tuners (objective
    :class:`~rejectnet.losses.CrossEntropyLoss`): SGD with a per-step cosine schedule by
    default (the paper: lr 0.01, batch 64, 10 epochs for MNIST), progress, seeding, mixed
    precision and crash-safe checkpoints.

    Args:
        model: The classifier to train (modified in place).
        loader: Labeled batches ``(x, y)``.
        epochs: Passes over ``loader``.
        val_loader: Optional labeled data for per-epoch accuracy.
        resume: Continue from the latest checkpoint in ``checkpoint_dir``.
        options: A :class:`~rejectnet.finetune.TrainOptions` to start from.
        **kwargs: Any :class:`~rejectnet.finetune.TrainOptions` field except
            ``outlier_ratio`` and ``outlier_signal``.

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
    for key in ("outlier_ratio", "outlier_signal"):
        if key in kwargs:
            raise TypeError(f"train_classifier takes no {key}: stage one uses no outliers")
    trainer = Finetuner(
        model, CrossEntropyLoss(), options=options, name="stage-one", epochs=epochs, **kwargs
    )
    return trainer.fit(loader, None, val_loader, resume=resume)
