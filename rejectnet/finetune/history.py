"""Per-epoch training statistics: what ``fit`` returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["EpochStats", "History"]


@dataclass
class EpochStats:
    """Statistics of one epoch (one pass over the in-distribution loader).

    Attributes:
        epoch: 1-based epoch number.
        steps: Optimizer steps taken in this epoch.
        loss: Mean total loss.
        in_loss: Mean in-distribution cross-entropy.
        out_loss: Mean outlier loss (``None`` without outliers).
        in_accuracy: Training accuracy over the C classes.
        out_on_reject: Share of outliers whose argmax over all C + k outputs already
            fell on a reject unit (self-supervised fine-tuning only).
        val_accuracy: Accuracy on ``val_loader`` at the end of the epoch, if given.
        lr: Learning rate at the end of the epoch.
        seconds: Wall time of the epoch.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import train_classifier
        >>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> stats = train_classifier(nn.Linear(4, 2), [(x, y)], epochs=1, progress=False)[0]
        >>> stats.epoch, stats.steps, stats.out_loss is None
        (1, 1, True)
    """

    epoch: int
    steps: int
    loss: float
    in_loss: float
    out_loss: float | None
    in_accuracy: float
    out_on_reject: float | None
    val_accuracy: float | None
    lr: float
    seconds: float


@dataclass
class History:
    """What ``fit`` returns: one :class:`EpochStats` per completed epoch.

    Indexing and ``len`` work as on the list ``epochs``.

    Attributes:
        epochs: The statistics of each completed epoch, in order.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from rejectnet import train_classifier
        >>> x, y = torch.randn(32, 4), torch.randint(0, 2, (32,))
        >>> history = train_classifier(nn.Linear(4, 2), [(x, y)], epochs=3, progress=False)
        >>> len(history), history[-1].epoch, len(history.to_dict()["loss"])
        (3, 3, 3)
    """

    epochs: list[EpochStats] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.epochs)

    def __getitem__(self, i: int) -> EpochStats:
        return self.epochs[i]

    def to_dict(self) -> dict[str, list[Any]]:
        """Column-wise view: ``{"loss": [...], "in_accuracy": [...], ...}``.

        Returns:
            One list per :class:`EpochStats` field, one entry per epoch (empty lists
            when no epoch has completed).

        Example:
            >>> sorted(History().to_dict())[:3]
            ['epoch', 'in_accuracy', 'in_loss']
        """
        rows = [asdict(e) for e in self.epochs]
        keys = list(rows[0]) if rows else [f for f in EpochStats.__dataclass_fields__]
        return {k: [r[k] for r in rows] for k in keys}
